// Process-wide allocator tuning.
#pragma once

namespace seqrec {

/// Keeps freed large blocks in the heap instead of returning them to the kernel. glibc maps every
/// block over 128 KiB fresh by default, and training allocates tens of MB of activations per step:
/// the page faults cost more than the arithmetic (2.8x training throughput on 2 cores, bench/).
void tune_allocator();

/// Re-executes the program with OMP_WAIT_POLICY=PASSIVE unless the variable is set. The OpenMP
/// runtime reads it once at load time; with the default (spinning) policy a 2-thread LibTorch
/// process slows down up to 10x whenever anything else (our own data-loader thread, a compiler)
/// needs a core (measured in bench/). Returns only when no re-exec happened.
void ensure_passive_openmp(char** argv);

}  // namespace seqrec
