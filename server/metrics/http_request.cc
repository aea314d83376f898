#include "server/metrics/http_request.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ftd::metrics {

absl::StatusOr<HttpRequest> ParseHttpRequestHead(absl::string_view head) {
  const size_t line_end = head.find("\r\n");
  const absl::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == absl::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == absl::string_view::npos || sp2 == sp1 + 1) {
    return absl::InvalidArgumentError("bad request line");
  }
  for (char c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("a control character in the request line");
    }
  }
  HttpRequest request;
  request.method = std::string(line.substr(0, sp1));
  const absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  request.path = std::string(target.substr(0, target.find('?')));
  if (line_end == absl::string_view::npos) return request;
  for (absl::string_view header : absl::StrSplit(head.substr(line_end + 2), "\r\n")) {
    const size_t colon = header.find(':');
    if (colon == absl::string_view::npos ||
        !absl::EqualsIgnoreCase(header.substr(0, colon), "authorization")) {
      continue;
    }
    absl::string_view value = absl::StripAsciiWhitespace(header.substr(colon + 1));
    if (absl::ConsumePrefix(&value, "Bearer ")) request.bearer_token = std::string(value);
  }
  return request;
}

}  // namespace ftd::metrics
