// Evaluation protocols.
#include "seqrec/eval/evaluator.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_set>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/common/random.h"
#include "seqrec/data/batcher.h"

namespace seqrec::eval {
namespace {

// Where the model's parameters are (a CPU batch is moved there).
torch::Device model_device(models::SequenceRecommenderImpl& model) {
  const auto params = model.parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().device();
}

torch::Tensor last_states(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch) {
  data::SequenceBatch b = batch.to(model_device(model));
  b.last_only = true;                                    // only the newest position is read
  auto h = model.encode(b);                              // [B, W or 1, D]
  return h.select(1, h.size(1) - 1);                     // [B, D] (left padding: newest item is last)
}

}  // namespace

torch::Tensor full_scores(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch,
                          const std::vector<data::Span<int32_t>>& histories, config::HistoryMask history_mask,
                          int64_t max_seq_len, const torch::Tensor& keep) {
  auto scores = torch::matmul(last_states(model, batch), model.all_item_embeddings().t())
                    .to(torch::kCPU)
                    .contiguous();                                                                  // [B, V+1]
  const int64_t b = scores.size(0), v1 = scores.size(1);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* s = scores.data_ptr<float>();
  const int64_t* kp = keep.defined() ? keep.data_ptr<int64_t>() : nullptr;
  for (int64_t row = 0; row < b; ++row) {
    float* r = s + row * v1;
    const float kept = kp ? r[kp[row]] : 0.f;
    r[0] = neg_inf;
    if (history_mask != config::HistoryMask::kNone) {
      const auto& hist = histories[row];
      const int64_t from =
          history_mask == config::HistoryMask::kWindow ? std::max<int64_t>(0, hist.size() - max_seq_len) : 0;
      for (int64_t i = from; i < hist.size(); ++i) r[hist[i]] = neg_inf;
    }
    if (kp) r[kp[row]] = kept;  // a repeated target stays rankable
  }
  return scores;
}

std::vector<int64_t> sampled_candidates(const data::EvalQuery& query, int64_t num_items, int64_t num_negatives,
                                        int64_t seed) {
  std::unordered_set<int64_t> taken(query.history.begin(), query.history.end());
  taken.insert(query.target);
  std::vector<int64_t> out = {query.target};
  Rng rng(derive_seed({static_cast<uint64_t>(seed), 0x5a3b1eULL, static_cast<uint64_t>(query.user)}));
  const int64_t available = num_items - static_cast<int64_t>(taken.size());
  const int64_t want = std::min(num_negatives, std::max<int64_t>(0, available));
  while (static_cast<int64_t>(out.size()) < want + 1) {
    const int64_t item = 1 + static_cast<int64_t>(rng.below(num_items));
    if (taken.insert(item).second) out.push_back(item);
  }
  return out;
}

EvalResult evaluate(models::SequenceRecommenderImpl& model, const data::InteractionStore& store,
                    data::Split split, const config::EvalOptions& options, int64_t max_seq_len,
                    const std::vector<char>& cold_items, const EvalShard& shard) {
  if (options.protocol == config::Protocol::kGenerative)
    throw ConfigError("eval.protocol", "generative is LC-Rec's protocol (beam search over item codes): evaluate a "
                                       "model tuned by seqrec finetune with seqrec eval --checkpoint <its out_dir>; "
                                       "this model ranks items: use full or sampled");
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<data::EvalQuery> queries = data::eval_queries(store, split, options.max_users);
  if (options.protocol == config::Protocol::kSampled && options.num_negatives >= store.num_items() - 1)
    throw ConfigError("eval.num_negatives", std::to_string(options.num_negatives) + " negatives leave no item of the " +
                                                std::to_string(store.num_items()) +
                                                "-item catalogue unsampled: that is full ranking, not a sampled "
                                                "protocol; use eval.protocol: full, or fewer negatives");
  if (shard.world_size > 1) {
    TORCH_CHECK(shard.sum, "a sharded evaluation needs EvalShard::sum");
    // Strided, so that every rank gets a similar mix of short and long histories.
    std::vector<data::EvalQuery> mine;
    for (size_t i = shard.rank; i < queries.size(); i += shard.world_size) mine.push_back(queries[i]);
    queries = std::move(mine);
  }
  // Batches of similar lengths: the model then pads little (metrics are sums, order-free).
  std::stable_sort(queries.begin(), queries.end(), [&](const data::EvalQuery& a, const data::EvalQuery& b) {
    return std::min<int64_t>(a.history.size(), max_seq_len) < std::min<int64_t>(b.history.size(), max_seq_len);
  });
  MetricAccumulator acc(options.ks), cold(options.ks);
  auto add = [&](int64_t query, int64_t rank) {
    acc.add(rank);
    if (!cold_items.empty() && cold_items[queries[query].target]) cold.add(rank);
  };
  const int64_t n = static_cast<int64_t>(queries.size());
  int64_t short_users = 0;  // sampled: users with fewer unseen items than negatives (ranked against all of them)
  for (int64_t begin = 0; begin < n; begin += options.batch_size) {
    const int64_t end = std::min(n, begin + options.batch_size);
    data::SequenceBatch batch = data::make_eval_batch(queries, begin, end, max_seq_len);
    if (options.protocol == config::Protocol::kFull) {
      std::vector<data::Span<int32_t>> histories;
      for (int64_t i = begin; i < end; ++i) histories.push_back(queries[i].history);
      auto scores = full_scores(model, batch, histories, options.history_mask, max_seq_len, batch.targets);
      auto target_scores = scores.gather(1, batch.targets.unsqueeze(1));         // [B, 1]
      auto ranks = scores.ge(target_scores).sum(1) - 1;                          // [B] pessimistic ties
      auto* r = ranks.data_ptr<int64_t>();
      for (int64_t i = 0; i < end - begin; ++i) add(begin + i, r[i]);
    } else {
      const int64_t c = options.num_negatives + 1;
      auto cands = torch::zeros({end - begin, c}, torch::kInt64);                // [B, N+1]
      auto* cp = cands.data_ptr<int64_t>();
      std::vector<int64_t> sizes;
      for (int64_t i = begin; i < end; ++i) {
        auto ids = sampled_candidates(queries[i], store.num_items(), options.num_negatives, options.seed);
        std::copy(ids.begin(), ids.end(), cp + (i - begin) * c);
        sizes.push_back(static_cast<int64_t>(ids.size()));
        short_users += sizes.back() < c;
      }
      auto h = last_states(model, batch);                                        // [B, D]
      auto scores = torch::matmul(model.item_embeddings(cands.to(h.device())), h.unsqueeze(-1))
                        .squeeze(-1)
                        .to(torch::kCPU)
                        .contiguous();                                           // [B, N+1]
      auto* sp = scores.data_ptr<float>();
      for (int64_t i = 0; i < end - begin; ++i) {
        int64_t rank = 0;
        for (int64_t j = 1; j < sizes[i]; ++j) rank += sp[i * c + j] >= sp[i * c];
        add(begin + i, rank);
      }
    }
  }
  if (shard.world_size > 1) {  // sums and counts, not averages
    acc.set_sums(shard.sum(acc.sums()));
    if (!cold_items.empty()) cold.set_sums(shard.sum(cold.sums()));
    if (options.protocol == config::Protocol::kSampled)
      short_users = std::llround(shard.sum({static_cast<double>(short_users)})[0]);
  }
  if (short_users > 0 && shard.rank == 0)
    log_warn("eval: %ld of %ld users have fewer than %ld items outside their history: their candidates are "
             "all of those items (fewer negatives than eval.num_negatives)",
             static_cast<long>(short_users), static_cast<long>(acc.count()), static_cast<long>(options.num_negatives));
  EvalResult result;
  result.metrics = acc.result();
  result.users = acc.count();
  if (!cold_items.empty()) {
    for (const auto& [name, value] : cold.result()) result.metrics["cold_" + name] = value;
    result.metrics["cold_users"] = static_cast<double>(cold.count());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

TopK recommend(models::SequenceRecommenderImpl& model, const std::vector<int32_t>& history, int64_t k,
               int64_t max_seq_len, int64_t user, const std::vector<int64_t>& history_ts) {
  torch::NoGradGuard no_grad;
  model.eval();
  data::EvalQuery q;
  q.user = user;
  if (!history_ts.empty()) {
    q.history_ts = {history_ts.data(), static_cast<int64_t>(history_ts.size())};
    q.target_ts = history_ts.back();
  }
  q.history = {history.data(), static_cast<int64_t>(history.size())};
  std::vector<data::EvalQuery> queries = {q};
  data::SequenceBatch batch = data::make_eval_batch(queries, 0, 1, max_seq_len);
  auto scores =
      full_scores(model, batch, {q.history}, config::HistoryMask::kFull, max_seq_len, torch::Tensor());  // [1, V+1]
  const int64_t avail = scores.size(1) - 1 - static_cast<int64_t>(std::unordered_set<int32_t>(history.begin(), history.end()).size());
  auto top = scores.topk(std::max<int64_t>(0, std::min(k, avail)), 1);                           // partial selection
  TopK out;
  auto ids = std::get<1>(top)[0], vals = std::get<0>(top)[0];
  for (int64_t i = 0; i < ids.size(0); ++i) {
    out.ids.push_back(ids[i].item<int64_t>());
    out.scores.push_back(vals[i].item<float>());
  }
  return out;
}

}  // namespace seqrec::eval
