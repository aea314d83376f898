// Who makes a request, as the core needs to know: the tenant that will own
// what it creates and whose jobs and files it may see, and whether it is an
// admin (who sees everything). Authentication (server/security/) makes it;
// without authentication every caller is the admin of tenant "".
#pragma once

#include <string>

namespace ftd::core {

struct Caller {
  std::string tenant;
  bool admin = true;

  // A resource owned by `owner` is visible to this caller.
  bool CanSee(const std::string& owner) const { return admin || owner == tenant; }
};

}  // namespace ftd::core
