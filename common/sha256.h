// SHA-256 (FIPS 180-4), for content fingerprints of datasets and weights.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ftd {

class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  // The digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> Finish();
  // Lower-case hex of the digest.
  std::string FinishHex();

  static std::string Hex(std::string_view data) {
    Sha256 h;
    h.Update(data);
    return h.FinishHex();
  }

 private:
  void Block(const uint8_t* p);

  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

}  // namespace ftd
