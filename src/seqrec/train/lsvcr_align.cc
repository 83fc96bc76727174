// LSVCR stage 1: prompts, the LLM side and the alignment step and loop (lsvcr_align.h).
#include "seqrec/train/lsvcr_align.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/lsvcr_losses.h"
#include "seqrec/train/lsvcr_trainer.h"
#include "seqrec/train/optim.h"

namespace seqrec::train {

LsvcrAlignOptions read_lsvcr_align_options(config::ConfigNode node) {
  LsvcrAlignOptions o;
  o.llm = node.require<std::string>("llm");
  o.lora.rank = node.get<int64_t>("lora_rank", o.lora.rank);
  o.lora.alpha = node.get<double>("lora_alpha", o.lora.alpha);
  o.lora.dropout = node.get<double>("lora_dropout", o.lora.dropout);
  o.lora.target_modules = node.get<std::vector<std::string>>("lora_targets", o.lora.target_modules);
  o.prompt_history = node.get<int64_t>("prompt_history", o.prompt_history);
  o.max_prompt_tokens = node.get<int64_t>("max_prompt_tokens", o.max_prompt_tokens);
  o.max_response_tokens = node.get<int64_t>("max_response_tokens", o.max_response_tokens);
  o.rec_weight = node.get<double>("rec_weight", o.rec_weight);
  o.contrast_weight = node.get<double>("contrast_weight", o.contrast_weight);
  o.max_steps = node.get<int64_t>("max_steps", o.max_steps);
  if (o.max_steps < 0) throw ConfigError(config::key(node, "max_steps"), "must be >= 0");
  for (const char* k : {"lora_rank", "prompt_history", "max_prompt_tokens", "max_response_tokens"})
    config::require_positive(node.get<int64_t>(k, 1), config::key(node, k));
  return o;
}

LsvcrTexts load_lsvcr_texts(const std::string& data_dir) {
  LsvcrTexts t;
  const auto videos = data::ItemCatalog::load(data_dir + "/videos");
  const auto comments = data::ItemCatalog::load(data_dir + "/comments");
  t.video_titles.emplace_back();
  for (int64_t v = 1; v <= videos.num_items(); ++v) t.video_titles.push_back(videos.field(v, "title"));
  t.comment_texts.emplace_back();
  for (int64_t c = 1; c <= comments.num_items(); ++c) t.comment_texts.push_back(comments.field(c, "text"));
  return t;
}

LsvcrPrompt lsvcr_prompt(const data::LsvcrStore& store, const LsvcrTexts& texts, const data::LsvcrSample& s,
                         int64_t comment, int64_t prompt_history) {
  const auto& vh = store.video_histories[s.user].ids;
  const auto& ch = store.comment_histories[s.user].ids;
  std::string p = "Videos the user liked:";
  for (int64_t i = std::max<int64_t>(0, s.video_end - prompt_history); i < s.video_end; ++i)
    p += " \"" + texts.video_titles[vh[i]] + "\"";
  p += ". Comments the user liked:";
  for (int64_t i = std::max<int64_t>(0, s.comment_end - prompt_history); i < s.comment_end; ++i)
    p += " \"" + texts.comment_texts[ch[i]] + "\" on \"" + texts.video_titles[store.comment_video[ch[i]]] + "\"";
  LsvcrPrompt out;
  if (s.positive_comments.empty()) {
    out.prompt = p + ". The next video the user will like:";
    out.response = " " + texts.video_titles[s.target_video];
  } else {
    out.prompt = p + ". Current video: \"" + texts.video_titles[s.target_video] + "\". A comment the user will like:";
    out.response = " " + texts.comment_texts[comment];
  }
  return out;
}

torch::Tensor random_positions(int64_t batch, int64_t length, int64_t max_position, Rng& rng) {
  TORCH_CHECK(length <= max_position, "random_positions: length ", length, " > max_position ", max_position);
  auto out = torch::empty({batch, length}, torch::kInt64);
  std::vector<int64_t> all(static_cast<size_t>(max_position));
  for (int64_t b = 0; b < batch; ++b) {
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = 0; i < length; ++i)
      std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(i) + rng.below(all.size() - static_cast<size_t>(i))]);
    std::sort(all.begin(), all.begin() + length);
    std::copy(all.begin(), all.begin() + length, out[b].data_ptr<int64_t>());
  }
  return out;
}

LsvcrAlignerImpl::LsvcrAlignerImpl(std::shared_ptr<llm::DecoderLmImpl> lm, int64_t sr_dim) : llm(std::move(lm)) {
  register_module("llm", llm);
  contrast_adapter = register_module("contrast_adapter", torch::nn::Linear(llm->config().hidden_size, sr_dim));
}

std::pair<torch::Tensor, torch::Tensor> LsvcrAlignerImpl::forward(const torch::Tensor& ids, const torch::Tensor& valid,
                                                                  const torch::Tensor& labels,
                                                                  const torch::Tensor& user_index) {
  llm::DecoderInput in;
  in.input_ids = ids;
  in.key_valid = valid;
  auto hidden = llm->forward_hidden(in);                                                 // [B, T, D_llm]
  auto logits = llm->logits(hidden.slice(1, 0, -1));                                     // [B, T-1, V]
  auto lm = torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), labels.slice(1, 1).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  auto rows = torch::arange(ids.size(0), torch::kInt64);
  auto user = contrast_adapter(hidden.index({rows, user_index}));                        // [B, sr_dim]
  return {lm, user};
}

namespace {

/// Token ids, validity, labels and last-prompt index of a list of prompts (right-padded).
struct TokenBatch {
  torch::Tensor ids, valid, labels, user_index;
  int64_t tokens = 0;
};

TokenBatch tokenize(const llm::Tokenizer& tok, const std::vector<LsvcrPrompt>& prompts, const LsvcrAlignOptions& o) {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> prompt_len;
  for (const auto& p : prompts) {
    auto prompt = tok.encode(p.prompt), response = tok.encode(p.response);
    if (static_cast<int64_t>(prompt.size()) > o.max_prompt_tokens - 1)
      prompt.erase(prompt.begin(), prompt.end() - (o.max_prompt_tokens - 1));  // keep the newest part
    if (static_cast<int64_t>(response.size()) > o.max_response_tokens - 1) response.resize(o.max_response_tokens - 1);
    std::vector<int64_t> row;
    if (tok.bos_id() >= 0) row.push_back(tok.bos_id());
    row.insert(row.end(), prompt.begin(), prompt.end());
    prompt_len.push_back(static_cast<int64_t>(row.size()));
    row.insert(row.end(), response.begin(), response.end());
    if (tok.eos_id() >= 0) row.push_back(tok.eos_id());
    rows.push_back(std::move(row));
  }
  int64_t T = 0;
  for (const auto& r : rows) T = std::max<int64_t>(T, r.size());
  const int64_t B = static_cast<int64_t>(rows.size());
  TokenBatch b;
  b.ids = torch::zeros({B, T}, torch::kInt64);
  b.valid = torch::zeros({B, T}, torch::kBool);
  b.labels = torch::full({B, T}, -100, torch::kInt64);
  b.user_index = torch::empty({B}, torch::kInt64);
  for (int64_t i = 0; i < B; ++i) {
    const auto& r = rows[i];
    for (size_t t = 0; t < r.size(); ++t) {
      b.ids[i][t] = r[t];
      b.valid[i][t] = true;
      if (static_cast<int64_t>(t) >= prompt_len[i]) b.labels[i][t] = r[t];  // the response and EOS
    }
    b.user_index[i] = prompt_len[i] - 1;  // the last non-label token
    b.tokens += static_cast<int64_t>(r.size());
  }
  return b;
}

/// One task's terms.
struct TaskTerms {
  torch::Tensor lm, rec, contrast;
  int64_t tokens = 0;
};

TaskTerms task_terms(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner, const llm::Tokenizer& tok,
                     const data::LsvcrStore& store, const LsvcrTexts& texts,
                     const std::vector<const data::LsvcrSample*>& samples, bool video_task,
                     const LsvcrAlignOptions& o, Rng& rng) {
  const double tau = sr.options().temperature;
  LsvcrSampleBatch b = make_lsvcr_batch(store, samples, sr.options().max_history);
  const int64_t B = static_cast<int64_t>(samples.size());
  b.inputs.video_positions = random_positions(B, b.inputs.video_ids.size(1), sr.options().max_position, rng);
  b.inputs.comment_positions = random_positions(B, b.inputs.comment_ids.size(1), sr.options().max_position, rng);
  models::LsvcrStates states = sr.encode(b.inputs);
  std::vector<LsvcrPrompt> prompts;
  std::vector<int64_t> targets, last_video;
  for (const auto* s : samples) {
    const int64_t comment = video_task ? 0 : s->positive_comments[rng.below(s->positive_comments.size())];
    prompts.push_back(lsvcr_prompt(store, texts, *s, comment, o.prompt_history));
    targets.push_back(video_task ? s->target_video : comment);
    last_video.push_back(s->video_end > 0 ? store.video_histories[s->user].ids[s->video_end - 1] : 0);
  }
  auto target_ids = torch::tensor(targets, torch::kInt64);
  torch::Tensor task, other, target_text;
  if (video_task) {
    task = sr.video_user(states);                                                  // [B, D]
    other = sr.comment_user(states, torch::tensor(last_video, torch::kInt64));     // [B, D]
    target_text = sr.video_text(target_ids);                                       // [B, D]
  } else {
    task = sr.comment_user(states, b.videos);
    other = sr.video_user(states);
    target_text = sr.comment_text(target_ids);
  }
  TokenBatch tb = tokenize(tok, prompts, o);
  auto [lm, llm_user] = aligner.forward(tb.ids, tb.valid, tb.labels, tb.user_index);
  TaskTerms t;
  t.lm = lm;
  t.rec = info_nce(task, target_text, tau);
  t.contrast = lsvcr_alignment_contrast_loss(task, other, llm_user, tau);
  t.tokens = tb.tokens;
  return t;
}

}  // namespace

LsvcrAlignTerms lsvcr_align_step(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner, const llm::Tokenizer& tokenizer,
                                 const data::LsvcrStore& store, const LsvcrTexts& texts,
                                 const std::vector<const data::LsvcrSample*>& video_samples,
                                 const std::vector<const data::LsvcrSample*>& comment_samples,
                                 const LsvcrAlignOptions& o, Rng& rng) {
  std::vector<TaskTerms> parts;
  if (!video_samples.empty()) parts.push_back(task_terms(sr, aligner, tokenizer, store, texts, video_samples, true, o, rng));
  if (!comment_samples.empty())
    parts.push_back(task_terms(sr, aligner, tokenizer, store, texts, comment_samples, false, o, rng));
  TORCH_CHECK(!parts.empty(), "lsvcr_align_step: empty batch");
  LsvcrAlignTerms out;
  const double n = static_cast<double>(parts.size());
  out.lm = parts[0].lm / n;
  out.rec = parts[0].rec / n;
  out.contrast = parts[0].contrast / n;
  for (size_t i = 1; i < parts.size(); ++i) {
    out.lm = out.lm + parts[i].lm / n;
    out.rec = out.rec + parts[i].rec / n;
    out.contrast = out.contrast + parts[i].contrast / n;
  }
  for (const auto& p : parts) out.tokens += p.tokens;
  out.total = out.lm + o.rec_weight * out.rec + o.contrast_weight * out.contrast;
  return out;
}

double fit_lsvcr_align(models::LsvcrImpl& sr, const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                       const config::TrainOptions& t, const LsvcrAlignOptions& o,
                       const std::map<std::string, std::string>& metadata) {
  TORCH_CHECK(!sr.options().use_id_embeddings, "stage 1 runs RecCom without ID embeddings");
  const LsvcrTexts texts = load_lsvcr_texts(o.data_dir);
  auto tokenizer = llm::load_tokenizer(o.llm);
  llm::DecoderLm lm = llm::load_decoder_lm(o.llm);
  const int64_t adapted = nn::apply_lora(*lm, o.lora);  // freezes the base weights
  LsvcrAligner aligner(lm.ptr(), sr.options().hidden_dim);
  log_info("align: %s with LoRA r=%ld alpha=%.0f on %ld layers", o.llm.c_str(), long(o.lora.rank), o.lora.alpha,
           long(adapted));
  NamedTensors params;
  for (const auto& p : sr.named_parameters())
    if (p.value().requires_grad()) params.emplace_back("sr." + p.key(), p.value());
  for (const auto& p : aligner->named_parameters())
    if (p.value().requires_grad()) params.emplace_back("align." + p.key(), p.value());
  AdamW optimizer(params, {t.lr, t.beta1, t.beta2, t.eps, t.weight_decay});
  const auto& tv = splits.train.video;
  const auto& tc = splits.train.comment;
  const size_t B = static_cast<size_t>(t.batch_size);
  const size_t steps = (std::max(tv.size(), tc.size()) + B - 1) / B;
  int64_t tokens = 0, done = 0;
  double llm_seconds = 0;
  for (int64_t epoch = 0; epoch < t.epochs; ++epoch) {
    Rng rng(derive_seed({static_cast<uint64_t>(t.seed), static_cast<uint64_t>(epoch), 17}));
    torch::manual_seed(derive_seed({static_cast<uint64_t>(t.seed), static_cast<uint64_t>(epoch), 18}));
    std::vector<size_t> vo(tv.size()), co(tc.size());
    std::iota(vo.begin(), vo.end(), 0);
    std::iota(co.begin(), co.end(), 0);
    for (size_t i = vo.size(); i > 1; --i) std::swap(vo[i - 1], vo[rng.below(i)]);
    for (size_t i = co.size(); i > 1; --i) std::swap(co[i - 1], co[rng.below(i)]);
    sr.train();
    aligner->train();
    for (size_t step = 0; step < steps && (o.max_steps == 0 || done < o.max_steps); ++step, ++done) {
      std::vector<const data::LsvcrSample*> vb, cb;
      for (size_t i = step * B; i < (step + 1) * B; ++i) {
        if (!tv.empty() && (i < tv.size() || tv.size() < tc.size())) vb.push_back(&tv[vo[i % tv.size()]]);
        if (!tc.empty() && (i < tc.size() || tc.size() < tv.size())) cb.push_back(&tc[co[i % tc.size()]]);
      }
      const auto start = std::chrono::steady_clock::now();
      optimizer.zero_grad();
      LsvcrAlignTerms terms = lsvcr_align_step(sr, *aligner, *tokenizer, store, texts, vb, cb, o, rng);
      terms.total.backward();
      if (t.clip_norm > 0) clip_grad_norm(params, t.clip_norm);
      optimizer.step(t.lr);
      llm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      tokens += terms.tokens;
      if ((step + 1) % static_cast<size_t>(std::max<int64_t>(1, t.log_every)) == 0 || step + 1 == steps)
        log_info("[align] epoch %ld/%ld step %zu/%zu loss %.4f (lm %.4f rec %.4f contrast %.4f) %.0f LLM tokens/s",
                 long(epoch + 1), long(t.epochs), step + 1, steps, terms.total.item<double>(), terms.lm.item<double>(),
                 terms.rec.item<double>(), terms.contrast.item<double>(), double(tokens) / llm_seconds);
    }
  }
  make_dirs(t.out_dir);
  save_tensors(t.out_dir + "/sr_model.safetensors", model_state(sr), metadata);
  NamedTensors adapter;
  for (const auto& p : aligner->contrast_adapter->named_parameters()) adapter.emplace_back(p.key(), p.value());
  save_tensors(t.out_dir + "/contrast_adapter.safetensors", adapter, metadata);
  nn::save_lora(*lm, o.lora, t.out_dir + "/lora.safetensors");
  return llm_seconds > 0 ? double(tokens) / llm_seconds : 0.0;
}

}  // namespace seqrec::train
