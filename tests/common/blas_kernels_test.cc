#include "common/blas_kernels.h"

#include <dlfcn.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftd {
namespace {

CpuFeatures Avx512Xeon() {
  CpuFeatures cpu;
  cpu.vendor = "GenuineIntel";
  cpu.family = 6;
  cpu.model = 207;  // the Xeon Debian's OpenBLAS does not know
  cpu.avx = cpu.avx2 = cpu.fma = true;
  cpu.avx512f = cpu.avx512bw = cpu.avx512dq = cpu.avx512vl = cpu.avx512_bf16 = true;
  return cpu;
}

CpuFeatures Zen3() {
  CpuFeatures cpu;
  cpu.vendor = "AuthenticAMD";
  cpu.family = 25;
  cpu.avx = cpu.avx2 = cpu.fma = true;
  return cpu;
}

TEST(BlasKernelsTest, TheBestCoreFollowsTheWidestVectorUnits) {
  EXPECT_EQ(BestOpenBlasCore(Avx512Xeon()), "SkylakeX");
  EXPECT_EQ(BestOpenBlasCore(Zen3()), "Zen");
  CpuFeatures haswell = Zen3();
  haswell.vendor = "GenuineIntel";
  EXPECT_EQ(BestOpenBlasCore(haswell), "Haswell");
  CpuFeatures no_fma = haswell;
  no_fma.fma = false;
  EXPECT_EQ(BestOpenBlasCore(no_fma), "Sandybridge");
  // AVX-512F alone (no BW/DQ/VL) is not what SkylakeX's kernels need.
  CpuFeatures partial = haswell;
  partial.avx512f = true;
  EXPECT_EQ(BestOpenBlasCore(partial), "Haswell");
  EXPECT_EQ(BestOpenBlasCore(CpuFeatures{}), "");
}

TEST(BlasKernelsTest, AGenericCoreOnAWiderCpuIsAFallBack) {
  EXPECT_TRUE(IsWeakerOpenBlasCore("Prescott", Avx512Xeon()));
  EXPECT_TRUE(IsWeakerOpenBlasCore("Haswell", Avx512Xeon()));
  EXPECT_FALSE(IsWeakerOpenBlasCore("SkylakeX", Avx512Xeon()));
  EXPECT_FALSE(IsWeakerOpenBlasCore("Cooperlake", Avx512Xeon()));
  EXPECT_FALSE(IsWeakerOpenBlasCore("Zen", Zen3()));
  EXPECT_TRUE(IsWeakerOpenBlasCore("Prescott", Zen3()));
  // A core this does not know is not called a fall-back.
  EXPECT_FALSE(IsWeakerOpenBlasCore("SomeFutureLake", Avx512Xeon()));
  EXPECT_FALSE(IsWeakerOpenBlasCore("", Avx512Xeon()));
}

TEST(BlasKernelsTest, FeaturesAreListedForLogsAndLabels) {
  EXPECT_EQ(Zen3().FeatureList(), "avx avx2 fma");
  EXPECT_EQ(Avx512Xeon().FeatureList(),
            "avx avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16");
  EXPECT_EQ(CpuFeatures{}.FeatureList(), "none");
}

TEST(BlasKernelsTest, ANarrowerCoreIsReplacedOnceAndCheckedThen) {
  // The Xeon Debian's OpenBLAS does not know: run again with SkylakeX.
  KernelChoice first = ChooseKernels(nullptr, nullptr, "Prescott", Avx512Xeon());
  EXPECT_EQ(first.action, KernelChoice::Action::kRerunWith);
  EXPECT_EQ(first.core, "SkylakeX");
  EXPECT_THAT(first.reason, ::testing::HasSubstr("Prescott"));
  // The run after: check the core the first chose.
  KernelChoice second = ChooseKernels("SkylakeX", "SkylakeX", "SkylakeX", Avx512Xeon());
  EXPECT_EQ(second.action, KernelChoice::Action::kCheck);
  EXPECT_EQ(second.core, "SkylakeX");
  // A core that failed its check is not tried again.
  KernelChoice refused = ChooseKernels(nullptr, "refused:SkylakeX", "Prescott", Avx512Xeon());
  EXPECT_EQ(refused.action, KernelChoice::Action::kKeep);
  EXPECT_THAT(refused.reason, ::testing::HasSubstr("failed their check"));
}

TEST(BlasKernelsTest, WhatTheEnvironmentSetOrOpenBlasChoseRightIsKept) {
  // Some hosts set a core on purpose (OpenBLAS computes wrong results on
  // them with its own choice).
  KernelChoice set = ChooseKernels("Haswell", nullptr, "Haswell", Avx512Xeon());
  EXPECT_EQ(set.action, KernelChoice::Action::kKeep);
  EXPECT_THAT(set.reason, ::testing::HasSubstr("OPENBLAS_CORETYPE=Haswell"));
  EXPECT_EQ(ChooseKernels(nullptr, nullptr, "Zen", Zen3()).action, KernelChoice::Action::kKeep);
  EXPECT_EQ(ChooseKernels(nullptr, nullptr, "SkylakeX", Avx512Xeon()).action,
            KernelChoice::Action::kKeep);
  // Not OpenBLAS, or a core it does not know: nothing to do.
  EXPECT_EQ(ChooseKernels(nullptr, nullptr, "", Avx512Xeon()).action,
            KernelChoice::Action::kKeep);
  EXPECT_EQ(ChooseKernels(nullptr, nullptr, "NewLake", Avx512Xeon()).action,
            KernelChoice::Action::kKeep);
}

TEST(BlasKernelsTest, ThisMachineAndItsOpenBlas) {
  const CpuFeatures cpu = DetectCpuFeatures();
#if defined(__x86_64__)
  EXPECT_FALSE(cpu.vendor.empty());
  EXPECT_TRUE(cpu.avx2 == false || cpu.avx);  // AVX2 implies AVX
#endif
  // This test does not link OpenBLAS: nothing is loaded until it is.
  EXPECT_EQ(LoadedOpenBlasCore(), "");
  void* openblas = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_GLOBAL);
  if (openblas == nullptr) GTEST_SKIP() << "no libopenblas.so.0 here";
  const std::string core = LoadedOpenBlasCore();
  EXPECT_FALSE(core.empty());
  // Its products of the engine's shapes agree with a plain loop.
  EXPECT_TRUE(CheckMatrixProducts().ok()) << CheckMatrixProducts().message();
  std::printf("OpenBLAS core %s on %s family %d model %d (%s); best %s\n", core.c_str(),
              cpu.vendor.c_str(), cpu.family, cpu.model, cpu.FeatureList().c_str(),
              BestOpenBlasCore(cpu).c_str());
}

}  // namespace
}  // namespace ftd
