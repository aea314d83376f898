// "host:port" addresses.
#pragma once

#include <string>

namespace ftd {

// True for 127.0.0.0/8 (four decimal octets), ::1 and "localhost", with or
// without a port ("127.0.0.1:50051", "[::1]:50051").
bool IsLoopbackAddress(const std::string& address);

}  // namespace ftd
