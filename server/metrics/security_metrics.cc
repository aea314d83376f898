#include "server/metrics/security_metrics.h"

namespace ftd::metrics {

SecurityMetrics::SecurityMetrics(prometheus::Registry& registry)
    : refused_(prometheus::BuildCounter()
                   .Name("ftd_auth_refused_total")
                   .Help("Calls refused for their credentials (UNAUTHENTICATED) or their role "
                         "(PERMISSION_DENIED), by method and reason.")
                   .Register(registry)) {}

void SecurityMetrics::Refused(const std::string& method, const std::string& reason) {
  refused_.Add({{"method", method}, {"reason", reason}}).Increment();
}

}  // namespace ftd::metrics
