// The matrix-product kernels the daemon runs: where OpenBLAS fell back to
// kernels narrower than the CPU's vector units (Debian 12's OpenBLAS does
// this on Xeons it does not know), the daemon runs itself again, once, with
// OPENBLAS_CORETYPE naming the core made for the CPU, and checks that core's
// products against a plain loop before it goes on (falling back, logged,
// when they differ). A core set in the environment by anyone else is kept.
// The decision is common/blas_kernels.h's ChooseKernels.
#pragma once

namespace ftd::daemon {

// Called first thing in main, with main's argv: returns when this run goes
// on (with the kernels it has); else the program runs again in this process
// (execv) and this does not return. Logs what it chose and why.
void ChooseBlasKernels(char** argv);

}  // namespace ftd::daemon
