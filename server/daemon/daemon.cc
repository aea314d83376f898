#include "server/daemon/daemon.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"

namespace ftd::daemon {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(Options options) {
  if (!options.make_trainer) return absl::InvalidArgumentError("no trainer");
  std::error_code ec;
  const fs::path data_dir = fs::absolute(options.data_dir, ec);
  fs::create_directories(data_dir / "jobs", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("data_dir: cannot create \"", data_dir.string(), "\": ", ec.message()));
  }
  if (options.data_roots.empty()) options.data_roots.push_back(fs::current_path().string());
  std::vector<std::string> roots;
  for (const std::string& root : options.data_roots) {
    absl::StatusOr<std::string> canonical = CanonicalPath(fs::absolute(root).string());
    if (!canonical.ok() || !fs::is_directory(*canonical)) {
      return absl::InvalidArgumentError(
          absl::StrCat("data_roots: \"", root, "\" is not an existing folder"));
    }
    roots.push_back(*canonical);
  }
  // The daemon's own outputs may serve as base models.
  if (absl::StatusOr<std::string> jobs = CanonicalPath((data_dir / "jobs").string()); jobs.ok()) {
    roots.push_back(*jobs);
  }

  std::unique_ptr<Daemon> daemon(new Daemon());
  storage::Database::Options db_options;
  db_options.path = (data_dir / "db").string();
  db_options.column_families = {"jobs", storage::ActivationStore::kColumnFamily};
  db_options.column_family_options[storage::ActivationStore::kColumnFamily] =
      storage::ActivationStore::ColumnFamilyOptions(options.cache.tuning);
  ASSIGN_OR_RETURN(daemon->database_, storage::Database::Open(db_options));
  ASSIGN_OR_RETURN(daemon->store_, storage::RocksDbJobStore::Create(daemon->database_.get()));
  ASSIGN_OR_RETURN(daemon->activation_store_,
                   storage::ActivationStore::Open(daemon->database_.get(), options.cache));
  daemon->trainer_ = options.make_trainer(daemon->activation_store_.get());

  core::JobManager::Options manager_options;
  manager_options.store = daemon->store_.get();
  manager_options.trainer = daemon->trainer_.get();
  manager_options.activation_store = daemon->activation_store_.get();
  manager_options.devices = options.devices;
  manager_options.data_roots = roots;
  manager_options.jobs_dir = (data_dir / "jobs").string();
  manager_options.version = options.version;
  ASSIGN_OR_RETURN(daemon->manager_, core::JobManager::Create(std::move(manager_options)));
  daemon->service_ = std::make_unique<api::FineTuningService>(daemon->manager_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(daemon->service_.get());
  daemon->server_ = builder.BuildAndStart();
  if (daemon->server_ == nullptr || port == 0) {
    daemon->manager_->Shutdown();
    return absl::UnavailableError(absl::StrCat("address: cannot listen on \"", options.address,
                                               "\" (in use, or not host:port)"));
  }
  const std::string host = options.address.substr(0, options.address.rfind(':'));
  daemon->address_ = absl::StrCat(host, ":", port);

  if (!options.address_file.empty()) {
    // Written whole, then renamed: a reader never sees half an address.
    const std::string tmp = options.address_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << daemon->address_ << "\n";
      if (!out) {
        daemon->Shutdown();
        return absl::UnavailableError(
            absl::StrCat("address_file: cannot write \"", options.address_file, "\""));
      }
    }
    fs::rename(tmp, options.address_file, ec);
    if (ec) {
      daemon->Shutdown();
      return absl::UnavailableError(absl::StrCat("address_file: cannot write \"",
                                                 options.address_file, "\": ", ec.message()));
    }
  }
  std::vector<std::string> devices;
  for (const auto& device : options.devices) devices.push_back(device.name());
  Log(LogLevel::kInfo,
      absl::StrCat("ftd ", options.version, " serving on ", daemon->address_, "; data in ",
                   data_dir.string(), "; data roots ", absl::StrJoin(roots, ", "), "; devices ",
                   devices.empty() ? "none" : absl::StrJoin(devices, ", "), "; activation cache ",
                   daemon->activation_store_->bytes() >> 20, " of ",
                   daemon->activation_store_->capacity_bytes() >> 20, " MiB"));
  return daemon;
}

Daemon::~Daemon() { Shutdown(); }

void Daemon::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Log(LogLevel::kInfo, "shutting down");
  if (server_ != nullptr) server_->GetHealthCheckService()->Shutdown();
  // Jobs stop first: their watchers are closed, so the server's own shutdown
  // does not wait on open streams.
  if (manager_ != nullptr) manager_->Shutdown();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }
  server_.reset();
  service_.reset();
  manager_.reset();
  trainer_.reset();
  if (activation_store_ != nullptr) activation_store_->Flush().IgnoreError();
  activation_store_.reset();
  store_.reset();
  database_.reset();
  Log(LogLevel::kInfo, "stopped");
}

}  // namespace ftd::daemon
