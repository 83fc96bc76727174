// Greedy, sampled and beam-search decoding with KV caches.
#include "seqrec/llm/generation.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "seqrec/common/error.h"

namespace seqrec::llm {
namespace {

torch::Tensor last_logprobs(DecoderLm& lm, const DecoderInput& in, DecoderCache* cache) {
  auto h = lm->forward_hidden(in, cache);                                   // [N, T, D]
  return torch::log_softmax(lm->logits(h.select(1, h.size(1) - 1)).to(torch::kFloat), -1);  // [N, V]
}

DecoderInput ids_input(const std::vector<int64_t>& ids) {
  DecoderInput in;
  in.input_ids = torch::tensor(ids, torch::kLong).unsqueeze(0);            // [1, T]
  return in;
}

// Nucleus sampling of one token from logprobs [V].
int64_t sample_token(const torch::Tensor& logprobs, double temperature, double top_p, at::Generator& gen) {
  auto probs = torch::softmax(logprobs / temperature, -1);                 // [V]
  if (top_p < 1.0) {
    auto sorted = probs.sort(-1, /*descending=*/true);
    auto values = std::get<0>(sorted), order = std::get<1>(sorted);
    auto cum = values.cumsum(-1);
    // Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    auto drop = (cum - values).gt(top_p);
    values = values.masked_fill(drop, 0.0);
    probs = torch::zeros_like(probs).scatter_(0, order, values);
  }
  return torch::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

std::vector<Hypothesis> beam_search(DecoderLm& lm, const std::vector<int64_t>& prompt, const GenerationOptions& o,
                                    LogitsConstraint* constraint) {
  const int64_t k = o.num_beams;
  DecoderCache cache;
  auto logprobs = last_logprobs(lm, ids_input(prompt), &cache);           // [1, V]
  std::vector<std::vector<int64_t>> beams = {{}};
  std::vector<double> scores = {0.0};
  std::vector<Hypothesis> finished;
  auto normalised = [&](double s, size_t len) { return s / std::pow(std::max<size_t>(len, 1), o.length_penalty); };
  for (int64_t step = 0; step < o.max_new_tokens && !beams.empty(); ++step) {
    if (constraint) constraint->apply(step, beams, logprobs);
    auto total = logprobs + torch::tensor(scores, torch::kDouble).to(torch::kFloat).unsqueeze(1);  // [N, V]
    const int64_t v = total.size(1);
    auto flat = total.reshape({-1});
    const int64_t want = std::min<int64_t>(2 * k, flat.size(0));
    auto top = flat.topk(want);
    auto vals = std::get<0>(top), idx = std::get<1>(top);
    std::vector<std::vector<int64_t>> next_beams;
    std::vector<double> next_scores;
    std::vector<int64_t> parents, tokens;
    for (int64_t i = 0; i < want && static_cast<int64_t>(next_beams.size()) < k; ++i) {
      const double s = vals[i].item<double>();
      if (!std::isfinite(s)) break;                                          // only disallowed tokens left
      const int64_t parent = idx[i].item<int64_t>() / v, token = idx[i].item<int64_t>() % v;
      std::vector<int64_t> ids = beams[parent];
      if (token == o.eos_id) {
        finished.push_back({ids, normalised(s, ids.size() + 1)});
        continue;
      }
      ids.push_back(token);
      next_beams.push_back(std::move(ids));
      next_scores.push_back(s);
      parents.push_back(parent);
      tokens.push_back(token);
    }
    beams = std::move(next_beams);
    scores = std::move(next_scores);
    if (beams.empty()) break;
    // Stop once k hypotheses are finished and the best live beam, scored at its current length,
    // is below the worst of them (the Hugging Face heuristic).
    if (static_cast<int64_t>(finished.size()) >= k) {
      double worst = finished[0].score;
      for (const auto& f : finished) worst = std::min(worst, f.score);
      if (normalised(scores[0], beams[0].size()) < worst) break;
    }
    auto parent_index = torch::tensor(parents, torch::kLong);
    for (auto& c : cache) {
      c.k = c.k.index_select(0, parent_index);
      c.v = c.v.index_select(0, parent_index);
    }
    DecoderInput in;
    in.input_ids = torch::tensor(tokens, torch::kLong).unsqueeze(1);        // [N, 1]
    in.positions = torch::full({static_cast<int64_t>(tokens.size()), 1}, static_cast<int64_t>(prompt.size()) + step,
                               torch::kLong);
    logprobs = last_logprobs(lm, in, &cache);
  }
  for (size_t i = 0; i < beams.size(); ++i) finished.push_back({beams[i], normalised(scores[i], beams[i].size())});
  std::stable_sort(finished.begin(), finished.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  if (static_cast<int64_t>(finished.size()) > k) finished.resize(k);
  return finished;
}

}  // namespace

std::vector<Hypothesis> generate(DecoderLm& lm, const std::vector<int64_t>& prompt, const GenerationOptions& o,
                                 LogitsConstraint* constraint) {
  if (prompt.empty()) throw RequestError("generate: the prompt has no tokens (add BOS?)");
  torch::NoGradGuard no_grad;
  lm->eval();
  if (o.strategy == "beam") return beam_search(lm, prompt, o, constraint);
  if (o.strategy != "greedy" && o.strategy != "sample")
    throw RequestError("generate: strategy '" + o.strategy + "' is not one of: greedy, sample, beam");
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  DecoderCache cache;
  DecoderInput in = ids_input(prompt);
  Hypothesis h;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    auto logprobs = last_logprobs(lm, in, &cache);                        // [1, V]
    if (constraint) constraint->apply(step, {h.ids}, logprobs);
    const int64_t token = o.strategy == "greedy" ? logprobs[0].argmax().item<int64_t>()
                                                 : sample_token(logprobs[0], o.temperature, o.top_p, gen);
    if (token == o.eos_id) break;
    h.score += logprobs[0][token].item<double>();
    h.ids.push_back(token);
    in = ids_input({token});
  }
  return {h};
}

std::vector<double> token_logprobs(DecoderLm& lm, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  lm->eval();
  if (ids.size() < 2) return {};
  auto h = lm->forward_hidden(ids_input(ids));                             // [1, T, D]
  auto lp = torch::log_softmax(lm->logits(h[0]).to(torch::kFloat), -1);    // [T, V]
  std::vector<double> out;
  for (size_t t = 1; t < ids.size(); ++t) out.push_back(lp[t - 1][ids[t]].item<double>());
  return out;
}

}  // namespace seqrec::llm
