#include "server/pool/launch_env.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ftd::pool {

namespace {

absl::StatusOr<int> Number(const std::function<const char*(const char*)>& getenv,
                           const char* name, int min, int max, bool required) {
  const char* value = getenv(name);
  if (value == nullptr || *value == '\0') {
    if (!required) return -1;
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the torchrun contract needs it beside MASTER_ADDR and RANK"));
  }
  int n = 0;
  if (!absl::SimpleAtoi(value, &n) || n < min || n > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": \"", std::string(value).substr(0, 32), "\" is not a number from ",
                     min, " to ", max));
  }
  return n;
}

}  // namespace

absl::StatusOr<std::optional<LaunchEnv>> ReadLaunchEnv(
    const std::function<const char*(const char*)>& getenv) {
  const char* addr = getenv("MASTER_ADDR");
  const char* rank = getenv("RANK");
  if ((addr == nullptr || *addr == '\0') && (rank == nullptr || *rank == '\0')) {
    return std::optional<LaunchEnv>();
  }
  if (addr == nullptr || *addr == '\0') {
    return absl::InvalidArgumentError("MASTER_ADDR: RANK is set but MASTER_ADDR is not");
  }
  LaunchEnv env;
  env.master_addr = addr;
  if (env.master_addr.size() > 253 ||
      env.master_addr.find_first_of(" /\t\n") != std::string::npos) {
    return absl::InvalidArgumentError("MASTER_ADDR: not a host name or address");
  }
  absl::StatusOr<int> n = Number(getenv, "RANK", 0, 65535, true);
  if (!n.ok()) return n.status();
  env.rank = *n;
  n = Number(getenv, "MASTER_PORT", 1, 65535, true);
  if (!n.ok()) return n.status();
  env.master_port = *n;
  n = Number(getenv, "WORLD_SIZE", 1, 65536, true);
  if (!n.ok()) return n.status();
  env.world_size = *n;
  if (env.rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("RANK: ", env.rank, " is not below WORLD_SIZE ", env.world_size));
  }
  n = Number(getenv, "LOCAL_RANK", 0, 1023, false);
  if (!n.ok()) return n.status();
  env.local_rank = *n;
  return std::optional<LaunchEnv>(env);
}

LaunchRole RoleOf(const LaunchEnv& env, int api_port) {
  LaunchRole role;
  role.coordinator = env.rank == 0;
  if (role.coordinator) {
    role.rendezvous_address = absl::StrCat("0.0.0.0:", env.master_port);
    return role;
  }
  const bool ipv6 = env.master_addr.find(':') != std::string::npos;
  role.join = absl::StrCat(ipv6 ? "[" : "", env.master_addr, ipv6 ? "]" : "", ":", api_port);
  role.worker_name = absl::StrCat("rank-", env.rank);
  role.cuda_device = env.local_rank;
  return role;
}

}  // namespace ftd::pool
