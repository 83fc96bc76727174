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
#include "seqrec/dist/all_gather.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
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

void random_positions_row(int64_t max_position, Rng& rng, int64_t* out, int64_t length) {
  TORCH_CHECK(length <= max_position, "random_positions: length ", length, " > max_position ", max_position);
  std::vector<int64_t> all(static_cast<size_t>(max_position));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t i = 0; i < length; ++i)
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(i) + rng.below(all.size() - static_cast<size_t>(i))]);
  std::sort(all.begin(), all.begin() + length);
  std::copy(all.begin(), all.begin() + length, out);
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

/// One task's part of a step on this rank: the SR inputs and the tokenized prompts.
struct TaskInputs {
  std::vector<const data::LsvcrSample*> samples;
  LsvcrSampleBatch batch;
  std::vector<int64_t> targets, last_video;
  TokenBatch tokens;
  int64_t labelled = 0;  ///< response and EOS tokens (the LM loss's denominator)
};

TaskInputs task_inputs(const models::LsvcrImpl& sr, const llm::Tokenizer& tok, const data::LsvcrStore& store,
                       const LsvcrTexts& texts, const std::vector<LsvcrAlignSample>& samples, bool video_task,
                       const LsvcrAlignOptions& o) {
  TaskInputs in;
  for (const auto& s : samples) in.samples.push_back(s.sample);
  in.batch = make_lsvcr_batch(store, in.samples, sr.options().max_history);
  const int64_t B = static_cast<int64_t>(samples.size());
  auto& inputs = in.batch.inputs;
  // Each history's real events (at least the first slot, which an empty history attends to) get a
  // sorted draw for their own count, so that a sample's positions do not depend on its batch; the
  // padding slots after them (never attended to) position 0.
  inputs.video_positions = torch::zeros({B, inputs.video_ids.size(1)}, torch::kInt64);
  inputs.comment_positions = torch::zeros({B, inputs.comment_ids.size(1)}, torch::kInt64);
  const int64_t max_history = sr.options().max_history;
  auto real = [max_history](int64_t end) { return std::max<int64_t>(1, std::min(end, max_history)); };
  std::vector<LsvcrPrompt> prompts;
  for (int64_t b = 0; b < B; ++b) {
    const data::LsvcrSample& s = *samples[static_cast<size_t>(b)].sample;
    Rng rng(samples[static_cast<size_t>(b)].seed);
    const int64_t comment = video_task ? 0 : s.positive_comments[rng.below(s.positive_comments.size())];
    random_positions_row(sr.options().max_position, rng, inputs.video_positions[b].data_ptr<int64_t>(), real(s.video_end));
    random_positions_row(sr.options().max_position, rng, inputs.comment_positions[b].data_ptr<int64_t>(),
                         real(s.comment_end));
    prompts.push_back(lsvcr_prompt(store, texts, s, comment, o.prompt_history));
    in.targets.push_back(video_task ? s.target_video : comment);
    in.last_video.push_back(s.video_end > 0 ? store.video_histories[s.user].ids[s.video_end - 1] : 0);
  }
  in.tokens = tokenize(tok, prompts, o);
  in.labelled = (in.tokens.labels.slice(1, 1) != -100).sum().item<int64_t>();
  return in;
}

/// One task's terms.
struct TaskTerms {
  torch::Tensor lm, rec, contrast;
  int64_t tokens = 0;
};

/// The terms of one task on this rank. `row_scale` and `token_scale` turn this rank's means over its
/// rows and labelled tokens into its share of the means over all ranks' (1 in one process).
TaskTerms task_terms(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner, TaskInputs& in, bool video_task,
                     const NegativePool& pool, double row_scale, double token_scale) {
  const double tau = sr.options().temperature;
  models::LsvcrStates states = sr.encode(in.batch.inputs);
  auto target_ids = torch::tensor(in.targets, torch::kInt64);
  torch::Tensor task, other, target_text;
  if (video_task) {
    task = sr.video_user(states);                                                     // [B, D]
    other = sr.comment_user(states, torch::tensor(in.last_video, torch::kInt64));     // [B, D]
    target_text = sr.video_text(target_ids);                                          // [B, D]
  } else {
    task = sr.comment_user(states, in.batch.videos);
    other = sr.video_user(states);
    target_text = sr.comment_text(target_ids);
  }
  auto [lm, llm_user] = aligner.forward(in.tokens.ids, in.tokens.valid, in.tokens.labels, in.tokens.user_index);
  TaskTerms t;
  t.lm = token_scale == 1.0 ? lm : lm * token_scale;
  t.rec = info_nce(task, target_text, tau, pool);
  t.contrast = lsvcr_alignment_contrast_loss(task, other, llm_user, tau, pool);
  if (row_scale != 1.0) {
    t.rec = t.rec * row_scale;
    t.contrast = t.contrast * row_scale;
  }
  t.tokens = in.tokens.tokens;
  return t;
}

}  // namespace

LsvcrAlignTerms lsvcr_align_step(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner, const llm::Tokenizer& tokenizer,
                                 const data::LsvcrStore& store, const LsvcrTexts& texts,
                                 const std::vector<LsvcrAlignSample>& video_samples,
                                 const std::vector<LsvcrAlignSample>& comment_samples,
                                 const LsvcrAlignOptions& o, const std::shared_ptr<dist::ProcessGroup>& group) {
  const bool shared = group != nullptr && group->world_size() > 1;
  std::vector<TaskInputs> inputs;  // [video, comment] (each may be empty)
  inputs.push_back(video_samples.empty() ? TaskInputs{}
                                         : task_inputs(sr, tokenizer, store, texts, video_samples, true, o));
  inputs.push_back(comment_samples.empty() ? TaskInputs{}
                                           : task_inputs(sr, tokenizer, store, texts, comment_samples, false, o));
  // Rows and labelled tokens of each task on every rank: [W, 4] = (video rows, comment rows, video
  // tokens, comment tokens); one rank: this rank's.
  auto counts = torch::tensor({int64_t(inputs[0].samples.size()), int64_t(inputs[1].samples.size()),
                               inputs[0].labelled, inputs[1].labelled}, torch::kInt64).view({1, 4});
  if (shared) counts = group->all_gather_rows(counts);
  const int64_t world = counts.size(0), rank = shared ? group->rank() : 0;
  std::vector<TaskTerms> parts;
  for (int task = 0; task < 2; ++task) {
    const int64_t rows = counts.select(1, task).sum().item<int64_t>();
    const int64_t tokens = counts.select(1, 2 + task).sum().item<int64_t>();
    const int64_t mine = counts[rank][task].item<int64_t>();
    if (rows == 0) continue;
    TORCH_CHECK(mine > 0, "lsvcr_align_step: rank ", rank, " has no ", task == 0 ? "video" : "comment",
                " samples while another rank has (every rank needs samples of both tasks in a step)");
    NegativePool pool;
    if (shared) {
      pool.gather = [&group](const torch::Tensor& x) { return dist::all_gather_with_grad(x, group); };
      pool.offset = counts.select(1, task).narrow(0, 0, rank).sum().item<int64_t>();
    }
    const double row_scale = shared ? double(world * mine) / double(rows) : 1.0;
    const double token_scale =
        shared ? double(world * counts[rank][2 + task].item<int64_t>()) / double(std::max<int64_t>(tokens, 1)) : 1.0;
    parts.push_back(task_terms(sr, aligner, inputs[static_cast<size_t>(task)], task == 0, pool, row_scale, token_scale));
  }
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
                       const std::map<std::string, std::string>& metadata,
                       const std::shared_ptr<dist::ProcessGroup>& group) {
  TORCH_CHECK(!sr.options().use_id_embeddings, "stage 1 runs RecCom without ID embeddings");
  const int64_t world = group ? group->world_size() : 1, rank = group ? group->rank() : 0;
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
  std::unique_ptr<dist::GradientReducer> reducer;
  if (world > 1) {
    std::vector<torch::Tensor> tensors;  // rank 0's initial weights everywhere
    for (const auto& p : sr.parameters()) tensors.push_back(p);
    for (const auto& p : aligner->parameters()) tensors.push_back(p);
    group->broadcast(tensors, 0);
    reducer = std::make_unique<dist::GradientReducer>(group, params);
    log_info("align: data parallel over %ld ranks (%s), %ld video + %ld comment samples per rank and step; the "
             "in-batch negatives of L_rec and L_contrast are gathered across ranks", long(world),
             group->backend().c_str(), long(t.batch_size), long(t.batch_size));
  }
  AdamW optimizer(params, {t.lr, t.beta1, t.beta2, t.eps, t.weight_decay});
  const auto& tv = splits.train.video;
  const auto& tc = splits.train.comment;
  const size_t B = static_cast<size_t>(t.batch_size), G = B * static_cast<size_t>(world);
  const size_t steps = (std::max(tv.size(), tc.size()) + G - 1) / G;
  int64_t tokens = 0, done = 0;
  double llm_seconds = 0;
  for (int64_t epoch = 0; epoch < t.epochs; ++epoch) {
    const uint64_t seed = static_cast<uint64_t>(t.seed), e = static_cast<uint64_t>(epoch);
    Rng rng(derive_seed({seed, e, 17}));
    // Dropout masks: rank 0 draws what one process draws, the other ranks their own.
    torch::manual_seed(rank == 0 ? derive_seed({seed, e, 18}) : derive_seed({seed, e, 18, static_cast<uint64_t>(rank)}));
    std::vector<size_t> vo(tv.size()), co(tc.size());
    std::iota(vo.begin(), vo.end(), 0);
    std::iota(co.begin(), co.end(), 0);
    for (size_t i = vo.size(); i > 1; --i) std::swap(vo[i - 1], vo[rng.below(i)]);
    for (size_t i = co.size(); i > 1; --i) std::swap(co[i - 1], co[rng.below(i)]);
    sr.train();
    aligner->train();
    for (size_t step = 0; step < steps && (o.max_steps == 0 || done < o.max_steps); ++step, ++done) {
      // The step's i-th sample of each task; the smaller set wraps around, and with several ranks the
      // larger one too (its last step is filled from the start of the order).
      std::vector<LsvcrAlignSample> vb, cb;
      const size_t first = step * G + static_cast<size_t>(rank) * B;
      for (size_t i = first; i < first + B; ++i) {
        if (!tv.empty() && (world > 1 || i < tv.size() || tv.size() < tc.size()))
          vb.push_back({&tv[vo[i % tv.size()]], derive_seed({seed, e, 19, 0, i})});
        if (!tc.empty() && (world > 1 || i < tc.size() || tc.size() < tv.size()))
          cb.push_back({&tc[co[i % tc.size()]], derive_seed({seed, e, 19, 1, i})});
      }
      const auto start = std::chrono::steady_clock::now();
      optimizer.zero_grad();
      LsvcrAlignTerms terms = lsvcr_align_step(sr, *aligner, *tokenizer, store, texts, vb, cb, o, group);
      terms.total.backward();
      if (reducer) reducer->finish();
      if (t.clip_norm > 0) clip_grad_norm(params, t.clip_norm);
      optimizer.step(t.lr);
      llm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      tokens += terms.tokens;
      if ((step + 1) % static_cast<size_t>(std::max<int64_t>(1, t.log_every)) == 0 || step + 1 == steps) {
        // The step's loss over all ranks (each rank's terms are its share: their mean is the loss).
        std::vector<double> v = {terms.total.item<double>(), terms.lm.item<double>(), terms.rec.item<double>(),
                                 terms.contrast.item<double>(), double(tokens)};
        if (world > 1) v = group->all_reduce_sum(v);
        for (size_t k = 0; k < 4; ++k) v[k] /= double(world);
        log_info("[align] epoch %ld/%ld step %zu/%zu loss %.4f (lm %.4f rec %.4f contrast %.4f) %.0f LLM tokens/s",
                 long(epoch + 1), long(t.epochs), step + 1, steps, v[0], v[1], v[2], v[3], v[4] / llm_seconds);
      }
    }
  }
  if (world > 1) tokens = static_cast<int64_t>(group->all_reduce_sum(std::vector<double>{double(tokens)})[0]);
  if (rank == 0) {
    make_dirs(t.out_dir);
    save_tensors(t.out_dir + "/sr_model.safetensors", model_state(sr), metadata);
    NamedTensors adapter;
    for (const auto& p : aligner->contrast_adapter->named_parameters()) adapter.emplace_back(p.key(), p.value());
    save_tensors(t.out_dir + "/contrast_adapter.safetensors", adapter, metadata);
    nn::save_lora(*lm, o.lora, t.out_dir + "/lora.safetensors");
  }
  if (world > 1) group->barrier();  // the files exist when any rank returns
  return llm_seconds > 0 ? double(tokens) / llm_seconds : 0.0;
}

}  // namespace seqrec::train
