// c10d process groups: TCPStore rendezvous, Gloo / NCCL creation, and blocking collectives.
#include "seqrec/dist/process_group.h"

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"

namespace seqrec::dist {
namespace {

// First line of a c10d message (they append a C++ stack trace).
std::string first_line(const std::exception& e) {
  std::string s = e.what();
  return s.substr(0, s.find('\n'));
}

std::string seconds(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", t.count() / 1000.0);
  return buf;
}

#ifdef USE_C10D_GLOO
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  // GLOO_SOCKET_IFNAME is PyTorch's variable for picking the network interface.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0')
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  try {
    return c10d::ProcessGroupGloo::createDefaultDevice();
  } catch (const std::exception& e) {
    // A host whose name does not resolve can still run a single-machine job over loopback.
    if (master_addr == "127.0.0.1" || master_addr == "localhost")
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    throw Error("Gloo cannot open a network device: " + first_line(e) +
                " (set GLOO_SOCKET_IFNAME to the interface that reaches MASTER_ADDR)");
  }
}

c10::intrusive_ptr<c10d::ProcessGroup> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                  int64_t world_size, std::chrono::milliseconds timeout,
                                                  std::shared_ptr<::gloo::transport::Device> device) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(std::move(device));
  // Two threads per group: one gradient bucket reduces while the next is being filled.
  options->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(world_size),
                                                     options);
}
#endif

std::string choose_backend(const std::string& requested) {
  if (requested == "gloo") {
    if (!have_gloo())
      throw ConfigError("backend", "this seqrec was built without Gloo (install libgloo-dev and rebuild)");
    return "gloo";
  }
  if (requested == "nccl") {
    if (!have_nccl())
      throw ConfigError("backend", "this seqrec was built without NCCL (needs a CUDA LibTorch with NCCL)");
    if (!torch::cuda::is_available()) throw ConfigError("backend", "nccl needs a CUDA device, none is visible");
    return "nccl";
  }
  if (requested != "auto") throw ConfigError("backend", "'" + requested + "' is not one of: auto, gloo, nccl");
  if (have_nccl() && torch::cuda::is_available()) return "nccl";
  if (have_gloo()) return "gloo";
  throw ConfigError("backend", "this seqrec was built without Gloo or NCCL: install libgloo-dev and rebuild");
}

// Every rank checks in under one key; each waits until the count reaches world_size.
void wait_for_peers(c10d::Store& store, const DistEnv& env, std::chrono::milliseconds timeout) {
  const std::string key = "seqrec/arrived";
  store.add(key, 1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const int64_t arrived = store.add(key, 0);
    if (arrived >= env.world_size) return;
    if (std::chrono::steady_clock::now() > deadline)
      throw Error("rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) + ": only " +
                  std::to_string(arrived) + " of " + std::to_string(env.world_size) + " processes arrived within " +
                  seconds(timeout) + " (rank " + std::to_string(env.rank) +
                  " waiting; check that every rank was started, with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::mutex default_mutex;
std::shared_ptr<ProcessGroup> default_group_ptr;

}  // namespace

bool have_gloo() {
#ifdef USE_C10D_GLOO
  return true;
#else
  return false;
#endif
}

bool have_nccl() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

ProcessGroup::ProcessGroup(c10::intrusive_ptr<c10d::ProcessGroup> group, std::string backend, torch::Device device)
    : group_(std::move(group)), backend_(std::move(backend)), device_(device) {
  rank_ = group_->getRank();
  world_size_ = group_->getSize();
}

ProcessGroup::~ProcessGroup() = default;

// One flat buffer per dtype: far fewer round trips than one collective per tensor.
struct ProcessGroup::Pending::State {
  struct Part {
    c10::intrusive_ptr<c10d::Work> work;
    at::Tensor flat;                   // on the backend's device
    std::vector<torch::Tensor> tensors;  // where the result goes
  };
  std::vector<Part> parts;
  bool write_back = true;  // false: the result stays in the buffers (a reduce on a rank other than the root)
};

ProcessGroup::Pending::Pending() = default;
ProcessGroup::Pending::Pending(Pending&&) noexcept = default;
ProcessGroup::Pending& ProcessGroup::Pending::operator=(Pending&&) noexcept = default;
ProcessGroup::Pending::~Pending() = default;

bool ProcessGroup::Pending::active() const { return state_ != nullptr; }

void ProcessGroup::Pending::wait() {
  if (!state_) return;
  const std::unique_ptr<State> s = std::move(state_);
  torch::NoGradGuard no_grad;
  for (auto& part : s->parts) {
    part.work->wait();
    if (!s->write_back) continue;
    auto flat = part.flat.to(torch::kCPU);
    int64_t offset = 0;
    for (const auto& t : part.tensors) {
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

namespace {

// The tensors grouped by dtype (in first-appearance order), each group flattened into one buffer on `device`.
std::vector<std::pair<std::vector<torch::Tensor>, at::Tensor>> flat_by_dtype(const std::vector<torch::Tensor>& tensors,
                                                                             torch::Device device) {
  std::vector<std::pair<std::vector<torch::Tensor>, at::Tensor>> groups;
  std::map<c10::ScalarType, size_t> index;
  for (const auto& t : tensors) {
    auto [it, added] = index.emplace(t.scalar_type(), groups.size());
    if (added) groups.emplace_back();
    groups[it->second].first.push_back(t);
  }
  for (auto& [list, flat] : groups) {
    std::vector<torch::Tensor> parts;
    for (const auto& t : list) parts.push_back(t.reshape(-1));
    flat = torch::cat(parts).to(device);
  }
  return groups;
}

}  // namespace

template <class Launch>
ProcessGroup::Pending ProcessGroup::start(const std::vector<torch::Tensor>& tensors, bool write_back, Launch launch) {
  torch::NoGradGuard no_grad;
  Pending pending;
  pending.state_ = std::make_unique<Pending::State>();
  pending.state_->write_back = write_back;
  for (auto& [list, flat] : flat_by_dtype(tensors, device_)) {
    std::vector<at::Tensor> buffer = {flat};
    pending.state_->parts.push_back({launch(buffer), flat, std::move(list)});
    bytes_ += flat.nbytes();
  }
  return pending;
}

ProcessGroup::Pending ProcessGroup::broadcast_async(const std::vector<torch::Tensor>& tensors, int64_t root) {
  return start(tensors, rank_ != root, [&](std::vector<at::Tensor>& buffer) {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    return group_->broadcast(buffer, options);
  });
}

void ProcessGroup::broadcast(const std::vector<torch::Tensor>& tensors, int64_t root) {
  broadcast_async(tensors, root).wait();
}

ProcessGroup::Pending ProcessGroup::reduce_sum_to_async(const std::vector<torch::Tensor>& tensors, int64_t root) {
  return start(tensors, rank_ == root, [&](std::vector<at::Tensor>& buffer) {
    c10d::ReduceOptions options;
    options.rootRank = root;
    return group_->reduce(buffer, options);
  });
}

void ProcessGroup::all_reduce_sum(const torch::Tensor& tensor) {
  TORCH_CHECK(tensor.is_contiguous(), "all_reduce_sum needs a contiguous tensor");
  std::vector<at::Tensor> buffer = {tensor.device() == device_ ? tensor : tensor.to(device_)};
  group_->allreduce(buffer)->wait();
  bytes_ += tensor.nbytes();
  if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
}

std::vector<double> ProcessGroup::all_reduce_sum(const std::vector<double>& values) {
  auto t = torch::tensor(values, torch::kFloat64);  // [n]
  all_reduce_sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

torch::Tensor ProcessGroup::all_gather_rows(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, "all_gather_rows needs at least one dimension");
  // Row counts first (they may differ per rank), then one gather of equally padded blocks.
  std::vector<at::Tensor> count = {torch::full({1}, x.size(0), torch::kInt64).to(device_)};
  std::vector<std::vector<at::Tensor>> counts(1);
  for (int64_t r = 0; r < world_size_; ++r) counts[0].push_back(torch::empty_like(count[0]));
  group_->allgather(counts, count)->wait();
  std::vector<int64_t> rows;
  int64_t max_rows = 0;
  for (const auto& c : counts[0]) {
    rows.push_back(c.to(torch::kCPU).item<int64_t>());
    max_rows = std::max(max_rows, rows.back());
  }
  auto shape = x.sizes().vec();
  shape[0] = max_rows;
  auto padded = torch::zeros(shape, x.options().device(device_));       // [max_rows, ...]
  padded.narrow(0, 0, x.size(0)).copy_(x.detach());
  std::vector<at::Tensor> input = {padded};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(padded));
  group_->allgather(output, input)->wait();
  bytes_ += padded.nbytes() + count[0].nbytes();
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < world_size_; ++r) parts.push_back(output[0][r].narrow(0, 0, rows[r]));
  return torch::cat(parts).to(x.device());                               // [sum rows, ...]
}

void ProcessGroup::barrier() { group_->barrier()->wait(); }

std::shared_ptr<ProcessGroup> init_process_group(const DistEnv& env, const InitOptions& options) {
  const std::string backend = choose_backend(options.backend);
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0 && !env.agent_store;
  store_options.numWorkers = static_cast<size_t>(env.world_size);
  store_options.waitWorkers = false;  // wait_for_peers does it, with a message that says who is missing
  store_options.timeout = options.timeout;
  // Rank 0's store connects a client to its own server; with a timeout of 300 ms that connect was
  // seen to time out (LibTorch 1.13), so the server side gets at least 5 s for it.
  if (store_options.isServer) store_options.timeout = std::max(options.timeout, std::chrono::milliseconds(5000));
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    if (store_options.isServer)
      throw Error("rank 0 cannot serve the rendezvous store on " + where + ": " + first_line(e) +
                  " (is MASTER_PORT in use? pick a free one)");
    throw Error("rank " + std::to_string(env.rank) + " cannot reach the rendezvous store at " + where + " within " +
                seconds(options.timeout) + ": " + first_line(e) +
                " (is rank 0 running, and MASTER_ADDR/MASTER_PORT the same on every rank?)");
  }
  // A restarted torchrun attempt meets the same agent store again: its keys must be fresh.
  store = c10::make_intrusive<c10d::PrefixStore>("seqrec/attempt_" + std::to_string(env.restart_count), store);
  wait_for_peers(*store, env, options.timeout);
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("pg", store);

  c10::intrusive_ptr<c10d::ProcessGroup> group;
  torch::Device device = torch::kCPU;
  try {
    if (backend == "nccl") {
#ifdef USE_C10D_NCCL
      // LOCAL_RANK picks the GPU.
      device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, static_cast<int>(env.rank),
                                                          static_cast<int>(env.world_size), nccl_options);
#endif
    } else {
#ifdef USE_C10D_GLOO
      group = make_gloo(prefixed, env.rank, env.world_size, options.timeout, gloo_device(env.master_addr));
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + ": cannot create the " + backend + " process group (" + where +
                "): " + first_line(e));
  }
  return std::make_shared<ProcessGroup>(group, backend, device);
}

std::vector<std::shared_ptr<ProcessGroup>> make_local_groups(int64_t world_size, std::chrono::milliseconds timeout) {
#ifdef USE_C10D_GLOO
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<c10::intrusive_ptr<c10d::ProcessGroup>> groups(world_size);
  std::vector<std::exception_ptr> errors(world_size);
  std::vector<std::thread> threads;
  // Each rank's constructor blocks until all ranks connect, so they are built concurrently.
  for (int64_t r = 0; r < world_size; ++r)
    threads.emplace_back([&, r] {
      try {
        groups[r] = make_gloo(store, r, world_size, timeout, c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  std::vector<std::shared_ptr<ProcessGroup>> out;
  for (auto& g : groups) out.push_back(std::make_shared<ProcessGroup>(g, "gloo", torch::kCPU));
  return out;
#else
  throw Error("this seqrec was built without Gloo (install libgloo-dev and rebuild)");
#endif
}

void set_default_group(std::shared_ptr<ProcessGroup> group) {
  std::lock_guard<std::mutex> lock(default_mutex);
  default_group_ptr = std::move(group);
}

std::shared_ptr<ProcessGroup> default_group() {
  std::lock_guard<std::mutex> lock(default_mutex);
  return default_group_ptr;
}

}  // namespace seqrec::dist
