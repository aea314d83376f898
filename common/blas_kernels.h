// Which matrix-product kernels this process runs, and which it could: the
// CPU's vector units (CPUID) and the core OpenBLAS chose for them when it
// loaded. Debian 12's OpenBLAS 0.3.21 (a DYNAMIC_ARCH build) does not know
// recent Xeon models and falls back to its generic Prescott kernels there,
// 3-7x slower than its SkylakeX ones (docs/performance.md). LibTorch-free.
#pragma once

#include <string>

namespace ftd {

struct CpuFeatures {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD"; empty off x86
  int family = 0;
  int model = 0;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;
  bool amx_tile = false;
  bool amx_bf16 = false;

  // The vector features present, space-separated ("avx avx2 fma"), for
  // logs and a metric's label.
  std::string FeatureList() const;
};

// This machine's, from CPUID (an empty vendor and no features off x86).
CpuFeatures DetectCpuFeatures();

// The core OpenBLAS chose in this process ("Zen", "Prescott"), from its
// openblas_get_corename(); empty when no OpenBLAS is loaded.
std::string LoadedOpenBlasCore();

// The core, of those Debian 12's OpenBLAS has, made for `cpu`'s widest
// vector units: "SkylakeX" (AVX-512 F, BW, DQ and VL), "Zen" (AMD with
// AVX2), "Haswell" (AVX2 and FMA), "Sandybridge" (AVX); empty otherwise.
std::string BestOpenBlasCore(const CpuFeatures& cpu);

// Whether `core` uses narrower vector units than `cpu` has: OpenBLAS fell
// back to kernels below the machine. False for a core this does not know.
bool IsWeakerOpenBlasCore(const std::string& core, const CpuFeatures& cpu);

}  // namespace ftd
