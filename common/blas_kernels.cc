#include "common/blas_kernels.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace ftd {
namespace {

// The vector width a core's kernels use: 1 SSE, 2 AVX, 3 AVX2, 4 AVX-512.
int Width(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl) return 4;
  if (cpu.avx2 && cpu.fma) return 3;
  if (cpu.avx) return 2;
  return 1;
}

// OpenBLAS's x86 cores by the width of their kernels (the names
// openblas_get_corename() gives, lower-cased); 0 for a name not here.
int CoreWidth(const std::string& core) {
  static const auto* const widths = new std::map<std::string, int>{
      {"katmai", 1},      {"coppermine", 1}, {"northwood", 1},     {"prescott", 1},
      {"banias", 1},      {"core2", 1},      {"penryn", 1},        {"dunnington", 1},
      {"nehalem", 1},     {"atom", 1},       {"athlon", 1},        {"opteron", 1},
      {"opteron_sse3", 1}, {"barcelona", 1},  {"nano", 1},          {"bobcat", 1},
      {"sandybridge", 2}, {"bulldozer", 2},  {"piledriver", 2},    {"steamroller", 2},
      {"excavator", 2},   {"haswell", 3},    {"zen", 3},           {"skylakex", 4},
      {"cooperlake", 4},  {"sapphirerapids", 4},
  };
  auto it = widths->find(absl::AsciiStrToLower(core));
  return it == widths->end() ? 0 : it->second;
}

}  // namespace

std::vector<std::string> CpuFeatures::Features() const {
  std::vector<std::string> names;
  for (const auto& [present, name] : std::vector<std::pair<bool, const char*>>{
           {avx, "avx"},
           {avx2, "avx2"},
           {fma, "fma"},
           {avx512f, "avx512f"},
           {avx512bw, "avx512bw"},
           {avx512dq, "avx512dq"},
           {avx512vl, "avx512vl"},
           {avx512_bf16, "avx512_bf16"},
           {amx_tile, "amx_tile"},
           {amx_bf16, "amx_bf16"},
       }) {
    if (present) names.push_back(name);
  }
  return names;
}

std::string CpuFeatures::FeatureList() const {
  const std::vector<std::string> names = Features();
  return names.empty() ? std::string("none") : absl::StrJoin(names, " ");
}

CpuFeatures DetectCpuFeatures() {
  CpuFeatures cpu;
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return cpu;
  const unsigned int max_leaf = eax;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  cpu.vendor = vendor;
  __get_cpuid(1, &eax, &ebx, &ecx, &edx);
  const unsigned int base_family = (eax >> 8) & 0xf;
  cpu.family = static_cast<int>(base_family == 0xf ? base_family + ((eax >> 20) & 0xff)
                                                   : base_family);
  cpu.model = static_cast<int>(((eax >> 4) & 0xf) |
                               (base_family == 0x6 || base_family == 0xf ? ((eax >> 16) & 0xf) << 4
                                                                         : 0));
  cpu.fma = (ecx >> 12) & 1;
  // AVX needs the OS to save the registers (OSXSAVE, and XCR0's bits).
  const bool osxsave = (ecx >> 27) & 1;
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned int lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool ymm = (xcr0 & 0x6) == 0x6;
  const bool zmm = ymm && (xcr0 & 0xe0) == 0xe0;
  const bool tiles = (xcr0 & 0x60000) == 0x60000;
  cpu.avx = ((ecx >> 28) & 1) && ymm;
  cpu.fma = cpu.fma && ymm;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned int subleaves = eax;
    cpu.avx2 = ((ebx >> 5) & 1) && ymm;
    cpu.avx512f = ((ebx >> 16) & 1) && zmm;
    cpu.avx512dq = ((ebx >> 17) & 1) && zmm;
    cpu.avx512bw = ((ebx >> 30) & 1) && zmm;
    cpu.avx512vl = ((ebx >> 31) & 1) && zmm;
    cpu.amx_bf16 = ((edx >> 22) & 1) && tiles;
    cpu.amx_tile = ((edx >> 24) & 1) && tiles;
    if (subleaves >= 1) {
      __cpuid_count(7, 1, eax, ebx, ecx, edx);
      cpu.avx512_bf16 = ((eax >> 5) & 1) && zmm;
    }
  }
#endif
  return cpu;
}

std::string LoadedOpenBlasCore() {
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name == nullptr ? "" : name;
}

std::string BestOpenBlasCore(const CpuFeatures& cpu) {
  switch (Width(cpu)) {
    case 4:
      return "SkylakeX";
    case 3:
      return cpu.vendor == "AuthenticAMD" || cpu.vendor == "HygonGenuine" ? "Zen" : "Haswell";
    case 2:
      return "Sandybridge";
    default:
      return "";
  }
}

bool IsWeakerOpenBlasCore(const std::string& core, const CpuFeatures& cpu) {
  const int width = CoreWidth(core);
  return width > 0 && width < Width(cpu);
}

KernelChoice ChooseKernels(const char* env_coretype, const char* chosen,
                           const std::string& loaded_core, const CpuFeatures& cpu) {
  KernelChoice choice;
  if (chosen != nullptr) {
    const std::string value = chosen;
    if (absl::StartsWith(value, "refused:")) {
      choice.reason = absl::StrCat("the ", value.substr(8),
                                   " kernels failed their check; OpenBLAS's own choice, ",
                                   loaded_core, ", is kept");
      return choice;
    }
    choice.action = KernelChoice::Action::kCheck;
    choice.core = value;
    choice.reason = absl::StrCat("OpenBLAS had chosen narrower kernels than this CPU's; running "
                                 "with its ", value, " kernels");
    return choice;
  }
  if (env_coretype != nullptr) {
    choice.reason = absl::StrCat("OPENBLAS_CORETYPE=", env_coretype, " was set in the environment");
    return choice;
  }
  if (loaded_core.empty()) {
    choice.reason = "the BLAS is not OpenBLAS";
    return choice;
  }
  const std::string best = BestOpenBlasCore(cpu);
  if (!best.empty() && IsWeakerOpenBlasCore(loaded_core, cpu)) {
    choice.action = KernelChoice::Action::kRerunWith;
    choice.core = best;
    choice.reason = absl::StrCat("OpenBLAS chose its ", loaded_core, " kernels for this CPU (",
                                 cpu.FeatureList(), "), which runs ", best, "'s");
    return choice;
  }
  choice.reason = absl::StrCat("OpenBLAS chose its ", loaded_core, " kernels");
  return choice;
}

absl::Status CheckMatrixProducts() {
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                         int, float, float*, int);
  auto sgemm = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  if (sgemm == nullptr) return absl::OkStatus();
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  struct Shape {
    int m, k, n;
    bool transposed_b;
  };
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int>(state >> 9) - (1 << 22)) / (1 << 22);
  };
  for (const Shape& shape : {Shape{48, 256, 1024, false}, Shape{48, 1024, 256, true},
                             Shape{256, 48, 256, false}, Shape{7, 33, 65, true}}) {
    std::vector<float> a(static_cast<size_t>(shape.m) * shape.k);
    std::vector<float> b(static_cast<size_t>(shape.k) * shape.n);
    for (float& v : a) v = next();
    for (float& v : b) v = next();
    std::vector<float> c(static_cast<size_t>(shape.m) * shape.n);
    // B is k x n, or stored n x k and transposed.
    sgemm(kRowMajor, kNoTrans, shape.transposed_b ? kTrans : kNoTrans, shape.m, shape.n, shape.k,
          1.0f, a.data(), shape.k, b.data(), shape.transposed_b ? shape.k : shape.n, 0.0f,
          c.data(), shape.n);
    double worst = 0;
    for (int i = 0; i < shape.m; ++i) {
      for (int j = 0; j < shape.n; ++j) {
        double sum = 0;
        for (int p = 0; p < shape.k; ++p) {
          const float bv = shape.transposed_b ? b[static_cast<size_t>(j) * shape.k + p]
                                              : b[static_cast<size_t>(p) * shape.n + j];
          sum += static_cast<double>(a[static_cast<size_t>(i) * shape.k + p]) * bv;
        }
        worst = std::max(worst, std::abs(sum - c[static_cast<size_t>(i) * shape.n + j]));
      }
    }
    // Float rounding of k products of values below 1: far under 1e-3.
    if (!(worst <= 1e-3)) {
      return absl::InternalError(absl::StrCat(
          "cblas_sgemm of ", shape.m, "x", shape.k, " by ", shape.k, "x", shape.n,
          shape.transposed_b ? " (transposed)" : "", " differs from a plain loop by ", worst));
    }
  }
  return absl::OkStatus();
}

}  // namespace ftd
