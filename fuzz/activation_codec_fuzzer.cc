// Fuzzes the activation cache's value decoder (what a damaged disk hands
// back): any bytes decode, with a view inside the value, or fail with
// DATA_LOSS, never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "storage/activation_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ftd::storage::ActivationView> view = ftd::storage::DecodeActivation(value);
  if (view.ok()) {
    const size_t bytes = static_cast<size_t>(view->tokens) * view->hidden *
                         ftd::storage::ActivationDtypeSize(view->dtype);
    if (view->data < value.data() || view->data + bytes > value.data() + value.size()) {
      __builtin_trap();
    }
    volatile char sink = 0;
    for (size_t i = 0; i < bytes; ++i) sink = sink ^ view->data[i];  // every byte is readable
    (void)sink;
  } else if (view.status().code() != absl::StatusCode::kDataLoss) {
    __builtin_trap();
  }
  return 0;
}
