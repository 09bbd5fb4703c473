// Global-scope part of the CPU kernel's two builds (see dcnv3_cpu_dispatch.inc): on x86-64 with GCC
// the kernel is also compiled for AVX2+FMA, whose intrinsics must be declared outside any namespace.
#pragma once

#include <cstdlib>
#include <string>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DCNV3_X86_DISPATCH 1
#include <immintrin.h>
#endif
