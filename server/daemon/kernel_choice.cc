#include "server/daemon/kernel_choice.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/blas_kernels.h"
#include "common/log.h"

namespace ftd::daemon {
namespace {

// Runs this program again with the environment as it now is; returns only
// when that fails.
void RunAgain(char** argv) {
  execv("/proc/self/exe", argv);
  Log(LogLevel::kWarning, absl::StrCat("kernels: could not run ftd again (", std::strerror(errno),
                                       "); OpenBLAS's own kernels are kept"));
}

}  // namespace

void ChooseBlasKernels(char** argv) {
  const CpuFeatures cpu = DetectCpuFeatures();
  const std::string loaded = LoadedOpenBlasCore();
  const KernelChoice choice = ChooseKernels(std::getenv("OPENBLAS_CORETYPE"),
                                            std::getenv(kChosenCoreVariable), loaded, cpu);
  switch (choice.action) {
    case KernelChoice::Action::kKeep:
      Log(LogLevel::kInfo, absl::StrCat("kernels: ", choice.reason));
      return;
    case KernelChoice::Action::kRerunWith:
      setenv("OPENBLAS_CORETYPE", choice.core.c_str(), 1);
      setenv(kChosenCoreVariable, choice.core.c_str(), 1);
      RunAgain(argv);
      unsetenv("OPENBLAS_CORETYPE");
      unsetenv(kChosenCoreVariable);
      return;
    case KernelChoice::Action::kCheck: {
      absl::Status checked =
          loaded == choice.core
              ? CheckMatrixProducts()
              : absl::FailedPreconditionError(absl::StrCat("OpenBLAS runs its ", loaded,
                                                           " kernels instead"));
      if (checked.ok()) {
        Log(LogLevel::kInfo, absl::StrCat("kernels: ", choice.reason,
                                          " (their products checked against a plain loop)"));
        return;
      }
      Log(LogLevel::kWarning,
          absl::StrCat("kernels: the ", choice.core, " kernels failed their check (",
                       checked.message(), "); running with OpenBLAS's own choice"));
      unsetenv("OPENBLAS_CORETYPE");
      setenv(kChosenCoreVariable, absl::StrCat("refused:", choice.core).c_str(), 1);
      RunAgain(argv);
      return;
    }
  }
}

}  // namespace ftd::daemon
