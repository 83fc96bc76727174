// Data-parallel communication on LibTorch's c10d: rendezvous through c10d's TCPStore, a Gloo
// (CPU) or NCCL (CUDA, when LibTorch has it) process group, and the few collectives seqrec uses.
// c10d and Gloo stay out of this header (pimpl).
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <c10/util/intrusive_ptr.h>

#include "seqrec/dist/env.h"

namespace c10d {
class ProcessGroup;
}

namespace seqrec::dist {

/// How to join the job.
struct InitOptions {
  std::string backend = "auto";          ///< auto (NCCL when CUDA and NCCL are there, else Gloo) | gloo | nccl
  std::chrono::milliseconds timeout{300'000};  ///< for every peer to arrive, and for each collective
};

/// One process's membership in a group of `world_size` processes. Collectives must be called in
/// the same order on every rank (c10d's rule). Tensors may live on the CPU for either backend: for
/// NCCL they are staged through this process's GPU.
class ProcessGroup {
 public:
  /// Wraps a c10d group; `device` is where the backend wants tensors (CPU for Gloo).
  ProcessGroup(c10::intrusive_ptr<c10d::ProcessGroup> group, std::string backend, torch::Device device);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }
  /// "gloo" or "nccl".
  const std::string& backend() const { return backend_; }
  /// Where the backend wants tensors (CPU for Gloo, cuda:LOCAL_RANK for NCCL).
  torch::Device device() const { return device_; }

  /// Collectives started without waiting (one flat collective per dtype over copies of the
  /// tensors). wait() blocks until it is done and writes the result into the tensors it was started
  /// with, which must stay alive until then; a Pending destroyed without wait() leaves them as
  /// they were. Like every collective, each must be started in the same order on every rank.
  class Pending {
   public:
    Pending();
    Pending(Pending&&) noexcept;
    Pending& operator=(Pending&&) noexcept;
    ~Pending();
    /// Blocks until the collective is done and writes its result; a no-op the second time.
    void wait();
    /// Whether wait() has work left to do.
    bool active() const;

   private:
    friend class ProcessGroup;
    struct State;
    std::unique_ptr<State> state_;
  };

  /// Overwrites every tensor with rank `root`'s values (in place; tensors must be contiguous).
  void broadcast(const std::vector<torch::Tensor>& tensors, int64_t root = 0);
  /// broadcast(), started: the tensors hold rank `root`'s values after wait().
  Pending broadcast_async(const std::vector<torch::Tensor>& tensors, int64_t root);
  /// Element-wise sums over ranks of each tensor, started: after wait() rank `root`'s tensors hold
  /// the sums; the other ranks' are left as they were.
  Pending reduce_sum_to_async(const std::vector<torch::Tensor>& tensors, int64_t root);
  /// Element-wise sum over ranks, in place, blocking.
  void all_reduce_sum(const torch::Tensor& tensor);
  /// Sum over ranks of plain numbers (exact for counts up to 2^53).
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  /// Concatenation over ranks along dim 0 of tensors whose shapes may differ in dim 0 only:
  /// [sum_r rows_r, ...], rank 0's rows first. No gradient (see all_gather.h for that).
  torch::Tensor all_gather_rows(const torch::Tensor& x);
  /// Blocks until every rank has arrived.
  void barrier();

  /// Payload bytes this process has handed to collectives so far (all-reduce, all-gather, broadcast).
  int64_t bytes_communicated() const { return bytes_; }
  /// For the code in dist/ that launches its own asynchronous collectives (gradient buckets).
  const c10::intrusive_ptr<c10d::ProcessGroup>& c10d_group() const { return group_; }
  /// Adds to bytes_communicated() (for collectives launched through c10d_group()).
  void count_bytes(int64_t bytes) { bytes_ += bytes; }

 private:
  // Flattens `tensors` by dtype and starts `launch(buffer)` (a c10d collective) on each buffer;
  // write_back: whether wait() copies the buffers' results into the tensors.
  template <class Launch>
  Pending start(const std::vector<torch::Tensor>& tensors, bool write_back, Launch launch);
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::string backend_;
  torch::Device device_;
  int64_t rank_ = 0;
  int64_t world_size_ = 1;
  int64_t bytes_ = 0;
};

/// Whether this build has the Gloo backend (libgloo-dev present at configure time).
bool have_gloo();
/// Whether this build has the NCCL backend (LibTorch with CUDA and NCCL).
bool have_nccl();

/// Joins the job described by `env`: rank 0 serves a c10d TCPStore at MASTER_ADDR:MASTER_PORT,
/// every rank checks in, and the process group is built once all WORLD_SIZE ranks have arrived.
/// Throws Error with the address, who is missing and a hint when a peer does not arrive within
/// options.timeout or the store cannot be reached.
std::shared_ptr<ProcessGroup> init_process_group(const DistEnv& env, const InitOptions& options);

/// `world_size` Gloo groups inside this process (one per rank, over loopback), for tests and
/// benchmarks that drive each rank from its own thread.
std::vector<std::shared_ptr<ProcessGroup>> make_local_groups(int64_t world_size,
                                                             std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// The process-wide group that losses consult for cross-rank negatives (null: single process).
void set_default_group(std::shared_ptr<ProcessGroup> group);
std::shared_ptr<ProcessGroup> default_group();

}  // namespace seqrec::dist
