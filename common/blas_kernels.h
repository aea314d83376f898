// Which matrix-product kernels this process runs, and which it could: the
// CPU's vector units (CPUID) and the core OpenBLAS chose for them when it
// loaded. Debian 12's OpenBLAS 0.3.21 (a DYNAMIC_ARCH build) does not know
// recent Xeon models and falls back to its generic Prescott kernels there,
// 3-7x slower than its SkylakeX ones (docs/performance.md). LibTorch-free.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

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

  // The vector features present ("avx", "avx2", "fma", ...).
  std::vector<std::string> Features() const;
  // The same, space-separated ("avx avx2 fma"; "none"), for logs and a
  // metric's label.
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

// What to do about the kernels before anything else runs (server/main.cc).
// OpenBLAS reads OPENBLAS_CORETYPE once, when the process loads it, so a
// better core takes running the program again with the variable set.
struct KernelChoice {
  enum class Action {
    kKeep,       // run with what OpenBLAS chose
    kRerunWith,  // run again with OPENBLAS_CORETYPE=core
    kCheck,      // this run has `core`, chosen by the last: check its products
  };
  Action action = Action::kKeep;
  std::string core;
  // Why, for the start-up log.
  std::string reason;
};

// The environment variable a run that chose a core sets for the next one:
// the core's name, or "refused:<core>" once the core failed its check.
inline constexpr char kChosenCoreVariable[] = "FTD_BLAS_CORE_CHOSEN";

// `env_coretype`: OPENBLAS_CORETYPE as this process found it (nullptr:
// unset); `chosen`: kChosenCoreVariable as the last run of this process set
// it (nullptr: this is the first). A core set in the environment by anyone
// but ftd is kept (some hosts set one because OpenBLAS computes wrong
// results on them); so is a core that failed its check; a core narrower
// than the CPU's vector units is replaced by BestOpenBlasCore.
KernelChoice ChooseKernels(const char* env_coretype, const char* chosen,
                           const std::string& loaded_core, const CpuFeatures& cpu);

// Compares matrix products of the engine's layer shapes (a 48-token
// sequence through 256- and 1024-wide layers, in both orientations) from
// the loaded BLAS's cblas_sgemm with a plain double-precision loop.
// Errors: INTERNAL naming the shape and the largest difference when they
// differ by more than float rounding; OK when no cblas_sgemm is loaded.
absl::Status CheckMatrixProducts();

}  // namespace ftd
