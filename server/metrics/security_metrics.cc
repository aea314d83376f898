#include "server/metrics/security_metrics.h"

namespace ftd::metrics {

SecurityMetrics::SecurityMetrics(prometheus::Registry& registry)
    : refused_(prometheus::BuildCounter()
                   .Name("ftd_auth_refused_total")
                   .Help("Calls refused for their credentials (UNAUTHENTICATED) or their role "
                         "(PERMISSION_DENIED), by method and reason.")
                   .Register(registry)),
      malformed_(prometheus::BuildCounter()
                     .Name("ftd_grpc_malformed_requests_total")
                     .Help("Requests that did not parse (truncated, a wrong wire type, a string "
                           "that is not UTF-8), answered INVALID_ARGUMENT, by method.")
                     .Register(registry)) {}

void SecurityMetrics::Refused(const std::string& method, const std::string& reason) {
  refused_.Add({{"method", method}, {"reason", reason}}).Increment();
}

void SecurityMetrics::Malformed(const std::string& method) {
  malformed_.Add({{"method", method}}).Increment();
}

}  // namespace ftd::metrics
