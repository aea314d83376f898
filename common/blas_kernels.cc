#include "common/blas_kernels.h"

#include <dlfcn.h>

#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
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

std::string CpuFeatures::FeatureList() const {
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

}  // namespace ftd
