// Who may call the daemon's services, and what is told of refusals.
#pragma once

#include <functional>
#include <string>

#include "server/security/authenticator.h"

namespace ftd::api {

struct Access {
  // Authentication is off when null (every caller is the admin of "").
  security::Authenticator* auth = nullptr;
  // Told of each refusal: the method and the reason (for the metrics;
  // never a credential).
  std::function<void(const std::string& method, const std::string& reason)> denied;
  // Told of each request that does not parse (for the metrics and a
  // rate-limited log line).
  std::function<void(const std::string& method)> malformed;
};

}  // namespace ftd::api
