// Greedy and sampled decoding over a DecoderLmScorer; beam search is llm/beam_search.
#include "seqrec/llm/generation.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/llm/beam_search.h"

namespace seqrec::llm {
namespace {

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

}  // namespace

std::vector<Hypothesis> generate(DecoderLm& lm, const std::vector<int64_t>& prompt, const GenerationOptions& o,
                                 LogitsConstraint* constraint) {
  if (prompt.empty()) throw RequestError("generate: the prompt has no tokens (add BOS?)");
  torch::NoGradGuard no_grad;
  lm->eval();
  if (o.strategy == "beam") {
    BeamSearchOptions beam;
    beam.num_beams = o.num_beams;
    beam.max_new_tokens = o.max_new_tokens;
    beam.length_penalty = o.length_penalty;
    beam.eos_id = o.eos_id;
    return beam_search(lm, {prompt}, beam, constraint)[0];
  }
  if (o.strategy != "greedy" && o.strategy != "sample")
    throw RequestError("generate: strategy '" + o.strategy + "' is not one of: greedy, sample, beam");
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  DecoderLmScorer scorer(lm);
  auto logprobs = scorer.start({prompt});                                  // [1, V]
  Hypothesis h;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (constraint) constraint->apply(step, {h.ids}, logprobs);
    const int64_t token = o.strategy == "greedy" ? logprobs[0].argmax().item<int64_t>()
                                                 : sample_token(logprobs[0], o.temperature, o.top_p, gen);
    if (token == o.eos_id) break;
    h.score += logprobs[0][token].item<double>();
    h.ids.push_back(token);
    if (step + 1 < o.max_new_tokens) logprobs = scorer.next({0}, {token});  // [1, V]
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
