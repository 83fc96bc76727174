// Batched beam search (Hugging Face BeamSearchScorer semantics) and its DecoderLm scorer.
#include "seqrec/llm/beam_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "seqrec/common/error.h"
#include "seqrec/llm/token_ids.h"

namespace seqrec::llm {

// ---- DecoderLmScorer ----

DecoderLmScorer::DecoderLmScorer(DecoderLm lm) : lm_(std::move(lm)) {}

torch::Tensor DecoderLmScorer::logprobs_of_last(const DecoderInput& in) {
  auto h = lm_->forward_hidden(in, &cache_);                                                    // [N, T, D]
  return torch::log_softmax(lm_->logits(h.select(1, h.size(1) - 1)).to(torch::kFloat), -1);    // [N, V]
}

torch::Tensor DecoderLmScorer::start(const std::vector<std::vector<int64_t>>& prompts) {
  const auto b = static_cast<int64_t>(prompts.size());
  int64_t w = 0;
  for (const auto& p : prompts) w = std::max<int64_t>(w, static_cast<int64_t>(p.size()));
  auto ids = torch::zeros({b, w}, torch::kLong);                                                // [B, W]
  auto positions = torch::zeros({b, w}, torch::kLong);                                          // [B, W]
  prompt_valid_ = torch::zeros({b, w}, torch::kBool);                                           // [B, W]
  prompt_len_.clear();
  for (int64_t i = 0; i < b; ++i) {
    const auto len = static_cast<int64_t>(prompts[i].size());
    const int64_t pad = w - len;  // left padding: every prompt's last token is in column W-1
    ids[i].narrow(0, pad, len).copy_(torch::tensor(prompts[i], torch::kLong));
    positions[i].narrow(0, pad, len).copy_(torch::arange(len, torch::kLong));
    prompt_valid_[i].narrow(0, pad, len).fill_(true);
    prompt_len_.push_back(len);
  }
  row_prompt_.resize(static_cast<size_t>(b));
  std::iota(row_prompt_.begin(), row_prompt_.end(), 0);
  step_ = 0;
  cache_.clear();
  const auto device = lm_->model->embed_tokens->weight.device();
  DecoderInput in;
  in.input_ids = token_ids_to(ids, device, lm_->config().vocab_size);
  in.positions = positions.to(device);
  padded_ = !prompt_valid_.all().item<bool>();
  if (padded_) in.key_valid = prompt_valid_;
  return logprobs_of_last(in);
}

torch::Tensor DecoderLmScorer::next(const std::vector<int64_t>& parents, const std::vector<int64_t>& tokens) {
  TORCH_CHECK(parents.size() == tokens.size() && !parents.empty(), "next: one parent per token, at least one");
  const auto n = static_cast<int64_t>(parents.size());
  const auto device = lm_->model->embed_tokens->weight.device();
  std::vector<int64_t> identity(parents.size());
  std::iota(identity.begin(), identity.end(), 0);
  if (parents != identity || n != static_cast<int64_t>(row_prompt_.size())) {
    auto index = torch::tensor(parents, torch::kLong).to(device);                               // [N]
    for (auto& c : cache_) {
      c.k = c.k.index_select(0, index);                                                         // [N, Hkv, S, hd]
      c.v = c.v.index_select(0, index);
    }
  }
  std::vector<int64_t> row_prompt(parents.size()), positions(parents.size());
  for (size_t i = 0; i < parents.size(); ++i) {
    row_prompt[i] = row_prompt_[static_cast<size_t>(parents[i])];
    positions[i] = prompt_len_[static_cast<size_t>(row_prompt[i])] + step_;
  }
  row_prompt_ = std::move(row_prompt);
  ++step_;
  DecoderInput in;
  in.input_ids = torch::tensor(tokens, torch::kLong).unsqueeze(1).to(device);                   // [N, 1]
  in.positions = torch::tensor(positions, torch::kLong).unsqueeze(1).to(device);                // [N, 1]
  if (padded_) {
    auto prompt_part = prompt_valid_.index_select(0, torch::tensor(row_prompt_, torch::kLong));  // [N, W]
    in.key_valid = torch::cat({prompt_part, torch::ones({n, step_}, torch::kBool)}, 1);        // [N, W + step]
  }
  return logprobs_of_last(in);
}

// ---- beam search ----

namespace {

// The best K finished hypotheses of one prompt (HF BeamHypotheses): a new one enters while fewer
// than K are kept or when it beats the worst, which then leaves.
class FinishedHypotheses {
 public:
  FinishedHypotheses(int64_t k, double length_penalty) : k_(k), length_penalty_(length_penalty) {}

  void add(const std::vector<int64_t>& ids, double sum_logprobs, int64_t generated_len) {
    const double score = sum_logprobs / std::pow(static_cast<double>(std::max<int64_t>(generated_len, 1)), length_penalty_);
    if (size() >= k_ && score <= worst()) return;
    hyps_.push_back({ids, score});
    if (size() > k_) hyps_.erase(std::min_element(hyps_.begin(), hyps_.end(), by_score));
  }
  int64_t size() const { return static_cast<int64_t>(hyps_.size()); }
  double worst() const { return std::min_element(hyps_.begin(), hyps_.end(), by_score)->score; }
  // HF BeamHypotheses.is_done, given the best running score of this step's candidates.
  bool is_done(EarlyStopping rule, double best_sum_logprobs, int64_t generated_len) const {
    if (size() < k_) return false;
    if (rule == EarlyStopping::kFirstK) return true;
    return worst() >= best_sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
  }
  std::vector<Hypothesis> best(int64_t n) const {
    auto out = hyps_;
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
    if (static_cast<int64_t>(out.size()) > n) out.resize(static_cast<size_t>(n));
    return out;
  }

 private:
  static bool by_score(const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; }
  int64_t k_;
  double length_penalty_;
  std::vector<Hypothesis> hyps_;
};

// A live hypothesis: one row of the scorer.
struct LiveRow {
  std::vector<int64_t> ids;  // generated tokens
  double score = 0;          // sum of log-probabilities
  int64_t prompt = 0;
};

// The top `want` (row, token) candidates of each prompt that has live rows, by running score,
// copied to the CPU once. Rows of a prompt are consecutive in `rows`.
struct Candidates {
  std::vector<int64_t> prompts;     // prompts in this step, in row order
  std::vector<int64_t> first_row;   // first row of each of them
  torch::Tensor values, indices;    // [P, want] CPU; index = beam slot * V + token
  int64_t want = 0;
  int64_t vocab = 0;
};

Candidates top_candidates(const torch::Tensor& logprobs, const std::vector<LiveRow>& rows, int64_t k) {
  Candidates c;
  std::vector<int64_t> slots;  // row -> P*K slot
  for (size_t r = 0; r < rows.size(); ++r) {
    if (c.prompts.empty() || c.prompts.back() != rows[r].prompt) {
      c.prompts.push_back(rows[r].prompt);
      c.first_row.push_back(static_cast<int64_t>(r));
    }
    slots.push_back((static_cast<int64_t>(c.prompts.size()) - 1) * k + static_cast<int64_t>(r) - c.first_row.back());
  }
  const auto p = static_cast<int64_t>(c.prompts.size());
  c.vocab = logprobs.size(1);
  std::vector<float> running;
  for (const auto& row : rows) running.push_back(static_cast<float>(row.score));
  const auto device = logprobs.device();
  auto total = logprobs + torch::tensor(running, torch::kFloat).to(device).unsqueeze(1);       // [N, V]
  auto padded = torch::full({p * k, c.vocab}, -INFINITY, total.options())                      // [P*K, V]
                    .index_copy_(0, torch::tensor(slots, torch::kLong).to(device), total);
  c.want = std::min<int64_t>(2 * k, k * c.vocab);
  auto top = padded.view({p, k * c.vocab}).topk(c.want, 1);
  c.values = std::get<0>(top).to(torch::kCPU).contiguous();                                    // [P, want]
  c.indices = std::get<1>(top).to(torch::kCPU).contiguous();
  return c;
}

// The next live rows, the parent row and token of each.
struct Step {
  std::vector<LiveRow> rows;
  std::vector<int64_t> parents, tokens;
};

// One step of HF BeamSearchScorer.process for every prompt in `c`.
Step select(const Candidates& c, const std::vector<LiveRow>& rows, int64_t step, const BeamSearchOptions& o,
            std::vector<FinishedHypotheses>& finished, std::vector<char>& done) {
  Step next;
  const int64_t k = o.num_beams;
  const auto* values = c.values.data_ptr<float>();
  const auto* indices = c.indices.data_ptr<int64_t>();
  for (size_t i = 0; i < c.prompts.size(); ++i) {
    const int64_t prompt = c.prompts[i];
    const float* v = values + i * c.want;
    const int64_t* idx = indices + i * c.want;
    int64_t kept = 0;
    for (int64_t rank = 0; rank < c.want && kept < k; ++rank) {
      if (!std::isfinite(v[rank])) break;  // only disallowed continuations are left
      const int64_t row = c.first_row[i] + idx[rank] / c.vocab, token = idx[rank] % c.vocab;
      if (token == o.eos_id) {
        // HF: an EOS outside the top K candidates does not close a hypothesis.
        if (rank < k) finished[prompt].add(rows[row].ids, v[rank], step + 1);
        continue;
      }
      LiveRow child{rows[row].ids, v[rank], prompt};
      child.ids.push_back(token);
      next.rows.push_back(std::move(child));
      next.parents.push_back(row);
      next.tokens.push_back(token);
      ++kept;
    }
    done[prompt] = done[prompt] || finished[prompt].is_done(o.early_stopping, v[0], step + 1);
  }
  // A prompt that is done keeps no live rows (HF pads them and ignores them at the end).
  Step out;
  for (size_t r = 0; r < next.rows.size(); ++r) {
    if (done[next.rows[r].prompt]) continue;
    out.rows.push_back(std::move(next.rows[r]));
    out.parents.push_back(next.parents[r]);
    out.tokens.push_back(next.tokens[r]);
  }
  return out;
}

}  // namespace

std::vector<std::vector<Hypothesis>> beam_search(NextTokenScorer& scorer, const std::vector<std::vector<int64_t>>& prompts,
                                                 const BeamSearchOptions& o, LogitsConstraint* constraint) {
  TORCH_CHECK(o.num_beams >= 1, "beam_search: num_beams must be >= 1");
  const int64_t num_return = o.num_return > 0 ? std::min(o.num_return, o.num_beams) : o.num_beams;
  std::vector<std::vector<Hypothesis>> out(prompts.size());
  if (prompts.empty() || o.max_new_tokens < 1) return out;
  std::vector<FinishedHypotheses> finished(prompts.size(), FinishedHypotheses(o.num_beams, o.length_penalty));
  std::vector<char> done(prompts.size(), 0);
  std::vector<LiveRow> rows;
  for (size_t p = 0; p < prompts.size(); ++p) rows.push_back({{}, 0.0, static_cast<int64_t>(p)});
  auto logprobs = scorer.start(prompts);                                                       // [B, V]
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (constraint) {
      std::vector<std::vector<int64_t>> prefixes;
      prefixes.reserve(rows.size());
      for (const auto& r : rows) prefixes.push_back(r.ids);
      constraint->apply(step, prefixes, logprobs);
    }
    Step next = select(top_candidates(logprobs, rows, o.num_beams), rows, step, o, finished, done);
    rows = std::move(next.rows);
    if (rows.empty() || step + 1 == o.max_new_tokens) break;
    logprobs = scorer.next(next.parents, next.tokens);                                         // [N, V]
  }
  // HF finalize: the live rows of prompts that are not done compete with the finished ones.
  for (const auto& r : rows) finished[r.prompt].add(r.ids, r.score, static_cast<int64_t>(r.ids.size()));
  for (size_t p = 0; p < prompts.size(); ++p) out[p] = finished[p].best(num_return);
  return out;
}

std::vector<std::vector<Hypothesis>> beam_search(DecoderLm& lm, const std::vector<std::vector<int64_t>>& prompts,
                                                 const BeamSearchOptions& options, LogitsConstraint* constraint) {
  for (size_t i = 0; i < prompts.size(); ++i)
    if (prompts[i].empty()) throw RequestError("beam search: prompt " + std::to_string(i) + " has no tokens (add BOS?)");
  torch::NoGradGuard no_grad;
  lm->eval();
  DecoderLmScorer scorer(lm);
  return beam_search(scorer, prompts, options, constraint);
}

}  // namespace seqrec::llm
