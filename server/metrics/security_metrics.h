// The metrics of access control: calls refused, by method and reason
// (never by token or tenant-supplied text). On the daemon's one registry.
#pragma once

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

namespace ftd::metrics {

class SecurityMetrics {
 public:
  explicit SecurityMetrics(prometheus::Registry& registry);

  // `method`: the RPC's name ("SubmitJob"); `reason`: MISSING_CREDENTIALS,
  // INVALID_TOKEN, INVALID_CERTIFICATE or ADMIN_ONLY.
  void Refused(const std::string& method, const std::string& reason);
  // A request to `method` that did not parse.
  void Malformed(const std::string& method);

 private:
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Family<prometheus::Counter>& malformed_;
};

}  // namespace ftd::metrics
