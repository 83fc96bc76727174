// Process-wide allocator tuning.
#pragma once

namespace seqrec {

/// Keeps freed large blocks in the heap instead of returning them to the kernel. glibc maps every
/// block over 128 KiB fresh by default, and training allocates tens of MB of activations per step:
/// the page faults cost more than the arithmetic (2.8x training throughput on 2 cores, bench/).
void tune_allocator();

}  // namespace seqrec
