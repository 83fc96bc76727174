// seqrec embed-items: item text embeddings [V, D] from a Hugging Face decoder LM (LC-Rec's input to
// the RQ-VAE), written as safetensors (tensor "embeddings", row r = dense item r + 1).
#include <torch/torch.h>

#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/semantic_id/item_embedding.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::cli {
namespace {

std::vector<std::string> split_fields(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text + ",") {
    if (ch == ',') {
      if (cur.empty()) throw RequestError("--fields: empty field name in '" + text + "'");
      out.push_back(cur);
      cur.clear();
    } else if (ch != ' ') {
      cur += ch;
    }
  }
  return out;
}

}  // namespace

int run_embed_items(const CliArgs& args) {
  semantic_id::TextEmbeddingOptions o;
  o.fields = split_fields(args.fields);
  o.max_tokens = args.max_text_tokens;
  o.batch_tokens = args.batch_tokens;
  if (o.max_tokens < 1) throw RequestError("--max-tokens must be >= 1");
  if (o.batch_tokens < 1) throw RequestError("--batch-tokens must be >= 1");
  set_threads(0);
  const data::ItemCatalog catalog = data::ItemCatalog::load(args.data_dir);
  auto tokenizer = llm::load_tokenizer(args.model_dir);
  llm::DecoderLm lm = llm::load_decoder_lm(args.model_dir);
  lm->eval();
  log_info("embed-items: %ld items of %s, fields %s, with %s (hidden %ld)", long(catalog.num_items()),
           args.data_dir.c_str(), args.fields.c_str(), args.model_dir.c_str(), long(lm->config().hidden_size));
  torch::Tensor emb = semantic_id::embed_item_texts(*lm, *tokenizer, catalog, o);          // [V, D]
  train::save_tensors(args.out, {{"embeddings", emb}},
                      {{"format", "seqrec-item-embeddings-1"}, {"model", args.model_dir}, {"fields", args.fields},
                       {"rows", "row r = dense item r + 1 of " + args.data_dir}});
  std::printf("{\"items\":%ld,\"dim\":%ld,\"out\":\"%s\"}\n", long(emb.size(0)), long(emb.size(1)), args.out.c_str());
  return 0;
}

}  // namespace seqrec::cli
