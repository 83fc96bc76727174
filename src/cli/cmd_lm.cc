// seqrec lm generate|score: check a Hugging Face decoder LM from the command line.
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/generation.h"
#include "seqrec/llm/tokenizer.h"

namespace seqrec::cli {

int run_lm(const CliArgs& args) {
  set_threads(0);
  auto tokenizer = llm::load_tokenizer(args.model_dir);
  llm::DecoderLm lm = llm::load_decoder_lm(args.model_dir);
  std::vector<int64_t> ids = tokenizer->encode_with_special(args.prompt);
  const int64_t max_positions = lm->config().max_position_embeddings;
  const int64_t new_tokens = args.lm_action == "score" ? 0 : args.max_new_tokens;
  if (static_cast<int64_t>(ids.size()) + new_tokens > max_positions)
    throw RequestError((args.lm_action == "score" ? "--text" : "--prompt") + std::string(" is ") +
                       std::to_string(ids.size()) + " tokens" +
                       (new_tokens > 0 ? " + " + std::to_string(new_tokens) + " new" : std::string()) +
                       ", more than the model's max_position_embeddings (" + std::to_string(max_positions) +
                       ", " + args.model_dir + "/config.json)");
  if (args.lm_action == "score") {
    if (ids.size() < 2)
      throw RequestError("--text: nothing to score: it encodes to " + std::to_string(ids.size()) +
                         " token(s) with the special ones, and scoring needs a token after the first");
    std::vector<double> lp = llm::token_logprobs(lm, ids);
    std::printf("position\ttoken_id\tpiece\tlogprob\n");
    double total = 0;
    for (size_t i = 0; i < lp.size(); ++i) {
      total += lp[i];
      std::printf("%zu\t%ld\t%s\t%.6f\n", i + 1, long(ids[i + 1]), tokenizer->id_to_piece(ids[i + 1]).c_str(), lp[i]);
    }
    std::fprintf(stderr, "total logprob %.4f over %zu tokens (perplexity %.3f)\n", total, lp.size(),
                 std::exp(-total / static_cast<double>(lp.size())));
    return 0;
  }
  if (args.max_new_tokens < 1) throw RequestError("--max-new-tokens must be >= 1");
  if (!(args.temperature > 0)) throw RequestError("--temperature must be > 0");
  if (!(args.top_p > 0 && args.top_p <= 1)) throw RequestError("--top-p must be in (0, 1]");
  if (args.num_beams < 1) throw RequestError("--num-beams must be >= 1");
  llm::GenerationOptions o;
  o.strategy = args.strategy;
  o.max_new_tokens = args.max_new_tokens;
  o.temperature = args.temperature;
  o.top_p = args.top_p;
  o.seed = static_cast<uint64_t>(args.seed);
  o.num_beams = args.num_beams;
  o.eos_id = tokenizer->eos_id();
  for (const auto& h : llm::generate(lm, ids, o)) {
    std::vector<int64_t> all = ids;
    all.insert(all.end(), h.ids.begin(), h.ids.end());
    std::printf("%s\n", tokenizer->decode(all).c_str());
    std::fprintf(stderr, "score %.4f, %zu new tokens\n", h.score, h.ids.size());
  }
  return 0;
}

}  // namespace seqrec::cli
