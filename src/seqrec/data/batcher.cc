// Training and evaluation batchers.
#include "seqrec/data/batcher.h"

#include <algorithm>
#include <numeric>

#include "seqrec/common/random.h"

namespace seqrec::data {
namespace {

// Batches are grouped by length within windows of this many batches (bucketing keeps randomness
// across windows while trimming most padding).
constexpr int64_t kBucketWindow = 32;

}  // namespace

std::vector<TrainSample> build_train_samples(const InteractionStore& store, int64_t max_seq_len,
                                             bool chunk_long_sequences, const std::vector<char>& excluded,
                                             int64_t holdout) {
  std::vector<TrainSample> samples;
  samples.reserve(store.num_users());
  const int64_t span = max_seq_len + 1;
  std::vector<int64_t> warm;  // event indices of the items that are not excluded
  for (int64_t u = 0; u < store.num_users(); ++u) {
    const int64_t n = train_length(store.items(u).size(), holdout);
    if (!excluded.empty()) {
      // Count only items that stay: the sample spans the last L+1 (or chunks of L+1) kept items;
      // the batcher drops the excluded ones inside the span.
      Span<int32_t> items = store.items(u);
      warm.clear();
      for (int64_t i = 0; i < n; ++i)
        if (!excluded[items[i]]) warm.push_back(i);
      const int64_t nw = static_cast<int64_t>(warm.size());
      if (nw < 2) continue;
      if (!chunk_long_sequences || nw <= span) {
        samples.push_back({u, warm[std::max<int64_t>(0, nw - span)], warm.back() + 1});
        continue;
      }
      for (int64_t k = nw % span; k + span <= nw; k += span) samples.push_back({u, warm[k], warm[k + span - 1] + 1});
      continue;
    }
    if (n < 2) continue;  // needs one input and one target
    if (!chunk_long_sequences || n <= span) {
      samples.push_back({u, std::max<int64_t>(0, n - span), n});
      continue;
    }
    // HLLM _build_seq: drop the oldest n mod (L+1) items, then non-overlapping chunks of L+1.
    for (int64_t begin = n % span; begin + span <= n; begin += span) samples.push_back({u, begin, begin + span});
  }
  return samples;
}

PackedPositions pack_positions(const torch::Tensor& item_ids) {
  PackedPositions p;
  p.batch = item_ids.size(0);
  p.width = item_ids.size(1);
  auto valid = item_ids.ne(0);                                                 // [B, W]
  p.rows = valid.reshape({-1}).nonzero().squeeze(1);                           // [T]
  p.lengths = valid.sum(1);                                                    // [B]
  p.cu_seqlens = torch::cat({torch::zeros({1}, p.lengths.options()), p.lengths.cumsum(0)});  // [B + 1]
  return p;
}

torch::Tensor PackedPositions::unpack(const torch::Tensor& x) const {
  return torch::zeros({batch * width, x.size(-1)}, x.options()).index_copy(0, rows, x).view({batch, width, x.size(-1)});
}

SequenceBatch SequenceBatch::to(const torch::Device& device) const {
  if (item_ids.device() == device) return *this;
  auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device, /*non_blocking=*/true) : t; };
  SequenceBatch out = *this;
  out.item_ids = move(item_ids);
  out.timestamps = move(timestamps);
  out.targets = move(targets);
  out.target_timestamps = move(target_timestamps);
  out.negatives = move(negatives);
  out.user_ids = move(user_ids);
  return out;
}

TrainBatcher::TrainBatcher(InteractionStore store, TrainBatcherOptions options)
    : store_(std::move(store)), options_(options) {
  samples_ = build_train_samples(store_, options_.max_seq_len, options_.chunk_long_sequences,
                                 options_.excluded_items, options_.holdout);
}

TrainBatcher::~TrainBatcher() { stop(); }

int64_t TrainBatcher::batches_per_epoch() const {
  // Same on every rank (see plan_epoch): full rounds of W batches, plus one batch when samples are left.
  const int64_t per_round = options_.batch_size * options_.world_size;
  return num_samples() / per_round + (num_samples() % per_round > 0 ? 1 : 0);
}

std::vector<std::vector<int64_t>> TrainBatcher::plan_epoch(int64_t epoch) const {
  Rng rng(derive_seed({options_.seed, 0x0e0cULL, static_cast<uint64_t>(epoch)}));
  std::vector<int64_t> order(samples_.size());
  std::iota(order.begin(), order.end(), 0);
  shuffle(order.begin(), order.end(), rng);
  const int64_t b = options_.batch_size;
  if (options_.length_bucketing) {
    const int64_t window = b * kBucketWindow;
    for (size_t start = 0; start < order.size(); start += window) {
      auto first = order.begin() + start;
      auto last = order.begin() + std::min(order.size(), start + window);
      std::stable_sort(first, last, [&](int64_t x, int64_t y) {
        return samples_[x].end - samples_[x].begin < samples_[y].end - samples_[y].begin;
      });
    }
  }
  std::vector<std::vector<int64_t>> batches;
  for (size_t start = 0; start < order.size(); start += b)
    batches.emplace_back(order.begin() + start, order.begin() + std::min(order.size(), start + b));
  if (options_.length_bucketing) shuffle(batches.begin(), batches.end(), rng);
  const int64_t w = options_.world_size, rank = options_.rank;
  if (w == 1) return batches;
  // Shard. Every rank must take the same number of steps (each step ends in an all-reduce), so:
  // full rounds of W batches are dealt round-robin (rank r takes batches r, r+W, ...), and the
  // samples left over (fewer than W*B) are split into W near-equal last batches. Disjoint and
  // covering; only when fewer than W samples are left over are a few repeated (DistributedSampler's
  // padding).
  std::vector<std::vector<int64_t>> full, mine;
  std::vector<int64_t> leftover;
  for (auto& batch : batches) {
    if (static_cast<int64_t>(batch.size()) == b)
      full.push_back(std::move(batch));
    else
      leftover = std::move(batch);  // at most one partial batch
  }
  const int64_t dealt = static_cast<int64_t>(full.size()) / w * w;
  for (int64_t i = rank; i < dealt; i += w) mine.push_back(std::move(full[i]));
  std::vector<int64_t> rest;
  for (int64_t i = dealt; i < static_cast<int64_t>(full.size()); ++i) rest.insert(rest.end(), full[i].begin(), full[i].end());
  rest.insert(rest.end(), leftover.begin(), leftover.end());
  if (rest.empty()) return mine;
  for (size_t i = 0; static_cast<int64_t>(rest.size()) < w; ++i) rest.push_back(order[i % order.size()]);
  const int64_t n = static_cast<int64_t>(rest.size());
  mine.emplace_back(rest.begin() + rank * n / w, rest.begin() + (rank + 1) * n / w);
  return mine;
}

SequenceBatch TrainBatcher::make_batch(const std::vector<int64_t>& sample_ids, uint64_t seed) const {
  const int64_t bsz = static_cast<int64_t>(sample_ids.size());
  // Trimmed to the batch's longest sequence; position_offset keeps the positions absolute.
  int64_t width = 1;
  for (int64_t id : sample_ids) width = std::max(width, samples_[id].end - samples_[id].begin - 1);
  const int64_t num_neg = options_.num_negatives;
  const bool has_ts = store_.has_timestamps();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  SequenceBatch batch;
  batch.item_ids = torch::zeros({bsz, width}, i64);
  batch.targets = torch::zeros({bsz, width}, i64);
  batch.user_ids = torch::empty({bsz}, i64);
  if (has_ts) {
    batch.timestamps = torch::zeros({bsz, width}, i64);
    batch.target_timestamps = torch::zeros({bsz, width}, i64);
  }
  if (num_neg > 0) batch.negatives = torch::zeros({bsz, width, num_neg}, i64);
  batch.position_offset = options_.max_seq_len - width;

  Rng rng(seed);
  const int64_t num_items = store_.num_items();
  std::vector<char> in_history;
  if (num_neg > 0 && options_.exclude_history) in_history.assign(num_items + 1, 0);
  auto* ids = batch.item_ids.data_ptr<int64_t>();
  auto* tgt = batch.targets.data_ptr<int64_t>();
  auto* neg = num_neg > 0 ? batch.negatives.data_ptr<int64_t>() : nullptr;
  const std::vector<char>& excluded = options_.excluded_items;
  std::vector<int64_t> kept;
  for (int64_t row = 0; row < bsz; ++row) {
    const TrainSample& s = samples_[sample_ids[row]];
    Span<int32_t> items = store_.items(s.user);
    batch.user_ids.data_ptr<int64_t>()[row] = s.user;
    // Events of the sample (cold-start items left out when asked).
    kept.clear();
    for (int64_t e = s.begin; e < s.end; ++e)
      if (excluded.empty() || !excluded[items[e]]) kept.push_back(e);
    const int64_t len = std::max<int64_t>(0, static_cast<int64_t>(kept.size()) - 1);
    const int64_t pad = width - len;
    for (int64_t t = 0; t < len; ++t) {
      ids[row * width + pad + t] = items[kept[t]];
      tgt[row * width + pad + t] = items[kept[t + 1]];
    }
    if (has_ts) {
      Span<int64_t> ts = store_.timestamps(s.user);
      auto* tsp = batch.timestamps.data_ptr<int64_t>();
      auto* ttp = batch.target_timestamps.data_ptr<int64_t>();
      for (int64_t t = 0; t < len; ++t) {
        tsp[row * width + pad + t] = ts[kept[t]];
        ttp[row * width + pad + t] = ts[kept[t + 1]];
      }
    }
    if (options_.recent_item_num > 0) shape_recent(row, width, pad, seed, ids, tgt);
    if (num_neg == 0) continue;
    const int64_t train_n = train_length(items.size(), options_.holdout);
    if (options_.exclude_history)
      for (int64_t t = 0; t < train_n; ++t) in_history[items[t]] = 1;
    for (int64_t t = 0; t < len; ++t) {
      int64_t* out = neg + (row * width + pad + t) * num_neg;
      for (int64_t r = 0; r < num_neg; ++r) {
        int64_t item;
        // Rejection sampling; a user who has seen almost every item falls back to any item.
        int tries = 0;
        do {
          item = 1 + static_cast<int64_t>(rng.below(num_items));
        } while (((options_.exclude_history && in_history[item]) || (!excluded.empty() && excluded[item])) &&
                 ++tries < 100);
        while (!excluded.empty() && excluded[item]) item = item % num_items + 1;  // never a held-out item
        out[r] = item;
      }
    }
    if (options_.exclude_history)
      for (int64_t t = 0; t < train_n; ++t) in_history[items[t]] = 0;
  }
  return batch;
}

// PerSRec's window (systems.md §6.1): the item before the recent slots gets the boundary target
// (as coded: the first user token, whose id the model gives), and recent inputs are dropped at
// random: a dropped slot is no input and no loss position, and is still the previous slot's target.
void TrainBatcher::shape_recent(int64_t row, int64_t width, int64_t pad, uint64_t seed, int64_t* ids,
                                int64_t* tgt) const {
  // Slot s of the max_seq_len-wide window is column s - (max_seq_len - width) of the trimmed batch.
  const int64_t first_recent = width - std::min(width, options_.recent_item_num);
  int64_t* row_ids = ids + row * width;
  int64_t* row_tgt = tgt + row * width;
  if (options_.boundary_target >= 0 && first_recent - 1 >= pad) row_tgt[first_recent - 1] = options_.boundary_target;
  if (options_.recent_item_dropout <= 0) return;
  Rng rng(derive_seed({seed, 0x5e6dULL, static_cast<uint64_t>(row)}));
  for (int64_t c = std::max(pad, first_recent); c < width; ++c)
    if (rng.uniform() < options_.recent_item_dropout) row_ids[c] = row_tgt[c] = 0;
}

void TrainBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  queue_.clear();
  stop_ = false;
}

void TrainBatcher::start_epoch(int64_t epoch) {
  stop();
  auto plan = plan_epoch(epoch);
  remaining_ = static_cast<int64_t>(plan.size());
  error_ = nullptr;
  worker_ = std::thread([this, plan = std::move(plan), epoch]() {
    try {
      for (size_t i = 0; i < plan.size(); ++i) {
        // The batch's sampling seed depends on (seed, epoch, batch index, rank) only.
        SequenceBatch batch = make_batch(
            plan[i], derive_seed({static_cast<uint64_t>(options_.seed), static_cast<uint64_t>(epoch),
                                  i, static_cast<uint64_t>(options_.rank)}));
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < options_.prefetch; });
        if (stop_) return;
        queue_.push_back(std::move(batch));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      cv_.notify_all();
    }
  });
}

bool TrainBatcher::next(SequenceBatch* batch) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (remaining_ == 0) return false;
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  if (error_) std::rethrow_exception(error_);
  *batch = std::move(queue_.front());
  queue_.pop_front();
  --remaining_;
  cv_.notify_all();
  return true;
}

SequenceBatch make_eval_batch(const std::vector<EvalQuery>& queries, int64_t begin, int64_t end,
                              int64_t max_seq_len) {
  const int64_t bsz = end - begin;
  int64_t width = 1;
  for (int64_t i = begin; i < end; ++i)
    width = std::max(width, std::min<int64_t>(queries[i].history.size(), max_seq_len));
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const bool has_ts = bsz > 0 && !queries[begin].history_ts.empty();
  SequenceBatch batch;
  batch.item_ids = torch::zeros({bsz, width}, i64);
  batch.user_ids = torch::empty({bsz}, i64);
  batch.targets = torch::empty({bsz}, i64);  // eval: one target per row
  if (has_ts) {
    batch.timestamps = torch::zeros({bsz, width}, i64);
    batch.target_timestamps = torch::zeros({bsz}, i64);
  }
  batch.position_offset = max_seq_len - width;
  auto* ids = batch.item_ids.data_ptr<int64_t>();
  for (int64_t row = 0; row < bsz; ++row) {
    const EvalQuery& q = queries[begin + row];
    const int64_t len = std::min<int64_t>(q.history.size(), max_seq_len);
    const int64_t skip = q.history.size() - len;
    for (int64_t t = 0; t < len; ++t) ids[row * width + width - len + t] = q.history[skip + t];
    if (has_ts) {
      auto* ts = batch.timestamps.data_ptr<int64_t>();
      for (int64_t t = 0; t < len; ++t) ts[row * width + width - len + t] = q.history_ts[skip + t];
      batch.target_timestamps.data_ptr<int64_t>()[row] = q.target_ts;
    }
    batch.user_ids.data_ptr<int64_t>()[row] = q.user;
    batch.targets.data_ptr<int64_t>()[row] = q.target;
  }
  return batch;
}

}  // namespace seqrec::data
