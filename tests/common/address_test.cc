#include "common/address.h"

#include "gtest/gtest.h"

namespace ftd {
namespace {

TEST(AddressTest, LoopbackAddressesAreNumericOrLocalhost) {
  for (const char* loopback :
       {"127.0.0.1:50051", "127.1.2.3", "localhost:1", "[::1]:50051", "::1", "localhost"}) {
    EXPECT_TRUE(IsLoopbackAddress(loopback)) << loopback;
  }
  for (const char* other : {"0.0.0.0:50051", "10.0.0.1:1", "127.evil.example.com:443",
                            "127.0.0.1.example.com", "127.0.0.256:1", "[::]:1", "ftd:50051"}) {
    EXPECT_FALSE(IsLoopbackAddress(other)) << other;
  }
}

}  // namespace
}  // namespace ftd
