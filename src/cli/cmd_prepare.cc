// seqrec prepare: raw interactions -> prepared store.
#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/item_text.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/data/prepare.h"
#include "seqrec/llm/tokenizer.h"

namespace seqrec::cli {

namespace {

/// prepare.format lsvcr: the two-behaviour folder of data/lsvcr_data.h (only input and output are read).
int run_prepare_lsvcr(config::ConfigNode& root, config::ConfigNode& n) {
  const std::string input = n.require<std::string>("input");
  const std::string output = n.require<std::string>("output");
  ignore_sections(root, "prepare");
  root.finish();
  const data::LsvcrPrepareReport r = data::prepare_lsvcr(input, output);
  log_info("prepare (lsvcr): %ld users, %ld videos, %ld comments, %ld video events, %ld comment events -> %s",
           long(r.num_users), long(r.num_videos), long(r.num_comments), long(r.num_video_events),
           long(r.num_comment_events), output.c_str());
  std::printf("{\"users\":%ld,\"videos\":%ld,\"comments\":%ld,\"video_events\":%ld,\"comment_events\":%ld}\n",
              long(r.num_users), long(r.num_videos), long(r.num_comments), long(r.num_video_events),
              long(r.num_comment_events));
  return 0;
}

}  // namespace

int run_prepare(const CliArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.input.empty()) overrides.push_back("prepare.input=" + args.input);
  if (!args.format.empty()) overrides.push_back("prepare.format=" + args.format);
  if (!args.items.empty()) overrides.push_back("prepare.items=" + args.items);
  if (!args.items_format.empty()) overrides.push_back("prepare.items_format=" + args.items_format);
  if (!args.out.empty()) overrides.push_back("prepare.output=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  config::ConfigNode n = root.child("prepare");
  if (n.get<std::string>("format", "csv") == "lsvcr") return run_prepare_lsvcr(root, n);
  data::PrepareOptions o;
  o.input = n.require<std::string>("input");
  o.format = data::parse_input_format(n.get<std::string>("format", "csv"), "prepare.format");
  o.sep = n.get<std::string>("sep", o.sep);
  o.user_col = n.get<std::string>("user_col", o.user_col);
  o.item_col = n.get<std::string>("item_col", o.item_col);
  o.time_col = n.get<std::string>("time_col", o.time_col);
  o.items = n.get<std::string>("items", o.items);
  o.items_format = data::parse_item_format(n.get<std::string>("items_format", "none"),
                                           "prepare.items_format");
  o.items_sep = n.get<std::string>("items_sep", o.items_sep);
  o.item_id_col = n.get<std::string>("item_id_col", o.item_id_col);
  o.min_user_interactions = n.get<int64_t>("min_user_interactions", o.min_user_interactions);
  o.min_item_interactions = n.get<int64_t>("min_item_interactions", o.min_item_interactions);
  o.kcore = n.get<bool>("kcore", o.kcore);
  o.skip_bad_rows = n.get<bool>("skip_bad_rows", o.skip_bad_rows);
  o.output = n.require<std::string>("output");
  o.threads = n.get<int64_t>("threads", o.threads);
  o.memory_limit_mb = n.get<int64_t>("memory_limit_mb", o.memory_limit_mb);
  if (o.sep.empty()) throw ConfigError("prepare.sep", "must not be empty");
  if (o.min_user_interactions < 0) throw ConfigError("prepare.min_user_interactions", "must be >= 0");
  if (o.min_item_interactions < 0) throw ConfigError("prepare.min_item_interactions", "must be >= 0");
  if (o.items_format != data::ItemFormat::kNone && o.items.empty())
    throw ConfigError("prepare.items", "items_format is set but no item file is given");
  // Item texts for an item LLM (HLLM): tokenised once here, cached in <output>/item_tokens.bin.
  const bool with_text = n.has("item_text");
  data::ItemTextOptions text;
  if (with_text) {
    config::ConfigNode t = n.child("item_text");
    text.tokenizer = t.require<std::string>("tokenizer");
    text.text_keys = t.get<std::vector<std::string>>("text_keys", text.text_keys);
    text.max_text_length = t.get<int64_t>("max_text_length", text.max_text_length);
    text.prompt = t.get<std::string>("prompt", text.prompt);
    if (t.has("image_words")) {  // Molar: "... [Text]. Item Image: [Img]. [Cur_Item]"
      config::ConfigNode w = t.child("image_words");
      text.image_before = w.get<std::string>("before", "");
      text.image_after = w.get<std::string>("after", "");
      if (text.image_before.empty() && text.image_after.empty())
        throw ConfigError(w.path(), "give before and/or after (the words around the image soft tokens)");
    }
    if (text.max_text_length < 1) throw ConfigError(t.path() + ".max_text_length", "must be >= 1");
    if (o.items.empty()) throw ConfigError(t.path(), "item texts need an item table (prepare.items)");
  }
  ignore_sections(root, "prepare");
  root.finish();
  std::unique_ptr<llm::Tokenizer> tokenizer;
  if (with_text) tokenizer = llm::load_tokenizer(text.tokenizer);  // fail before the long part
  if (with_text) {  // inside the store's temp folder, so that its marker lists the file
    o.finish = [&](const std::string& dir) {
      auto tokens = data::ItemTokens::build(data::ItemCatalog::load(dir), *tokenizer, text);
      tokens.save(dir + "/" + data::kItemTokensFile);
      log_info("prepare: item texts tokenised: %ld items, %ld tokens (%.1f per item, max %ld)",
               long(tokens.num_items()), long(tokens.total_tokens()),
               tokens.num_items() ? double(tokens.total_tokens()) / tokens.num_items() : 0.0,
               long(text.max_text_length));
      if (!tokens.image_before().empty() || !tokens.image_after().empty())
        log_info("prepare: image words: %ld tokens before the image soft tokens, %ld after",
                 long(tokens.image_before().size()), long(tokens.image_after().size()));
    };
  }
  data::PrepareReport r = data::prepare(o);
  log_info("prepare: %ld rows read, %ld skipped -> %ld users, %ld items, %ld events%s -> %s", long(r.rows_read),
           long(r.rows_skipped), long(r.num_users), long(r.num_items), long(r.num_events),
           r.has_timestamps ? "" : " (no timestamps: event order only)", o.output.c_str());
  std::printf("{\"rows_read\":%ld,\"rows_skipped\":%ld,\"users\":%ld,\"items\":%ld,\"events\":%ld,"
              "\"has_timestamps\":%s,\"items_with_text\":%ld}\n",
              long(r.rows_read), long(r.rows_skipped), long(r.num_users), long(r.num_items), long(r.num_events),
              r.has_timestamps ? "true" : "false", long(r.items_with_text));
  return 0;
}

}  // namespace seqrec::cli
