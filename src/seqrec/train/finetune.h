// Supervised fine-tuning of a Hugging Face decoder LM on prompt/response examples (LC-Rec's
// finetune.py / lora_finetune.py on transformers.Trainer): added tokens with mean-initialised rows,
// full fine-tuning or LoRA, AdamW with decoupled weight decay (not on norms and biases), linear
// warm-up then cosine decay, exact gradient accumulation, packed or padded micro-batches, gradient
// clipping, validation loss every epoch or N steps with the best model exported as a Hugging Face
// folder (train/hf_export.h), and exact resume at epoch boundaries.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/config/options.h"
#include "seqrec/nn/lora.h"

namespace seqrec::config {
class ConfigNode;
}
namespace seqrec::llm {
class DecoderLmImpl;
}
namespace seqrec::dist {
class ProcessGroup;
}

namespace seqrec::train {

/// `finetune.lora:` -- LoRA instead of full fine-tuning (lora_finetune.py's defaults).
struct FinetuneLoraOptions {
  bool enabled = false;                 ///< false: every weight trains
  nn::LoraOptions adapter{8, 32, 0.05, {"q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "down_proj", "up_proj"}};
  /// Modules trained whole next to the adapters and saved in it (PEFT modules_to_save): the input
  /// embeddings and output layer, so that the rows of added tokens learn.
  std::vector<std::string> modules_to_save = {"embed_tokens", "lm_head"};
};

/// `finetune:` -- data, model and optimisation of one fine-tuning run (defaults: LC-Rec's run.sh).
struct FinetuneOptions {
  std::string model_dir;                ///< base Hugging Face folder (config.json, weights, tokenizer)
  std::string train_file;               ///< JSONL of {"prompt", "response"} (epoch 1, and every epoch by default)
  /// Files of epochs 2, 3, ... (epoch e > 1 reads entry (e - 2) modulo their number): the same
  /// samples with other template draws, as `seqrec lcrec-data` writes them (train_epoch<e>.jsonl)
  /// and as LC-Rec draws a template per sample per epoch. Empty: train_file every epoch.
  std::vector<std::string> epoch_train_files;
  std::string valid_file;               ///< optional JSONL; its loss selects the exported model
  std::string out_dir;                  ///< Hugging Face folder written (replaced only if seqrec wrote it)
  std::vector<std::string> added_tokens;  ///< tokens to add, in order
  std::string added_tokens_file;        ///< more tokens, one per line
  std::string index_file;               ///< LC-Rec index.json: all its code tokens, sorted (upstream's order)
  bool only_train_response = true;      ///< loss on the response (and EOS) only
  int64_t max_length = 2048;            ///< tokens per example (model_max_length; right truncation)
  int64_t epochs = 4;
  int64_t batch_size = 8;               ///< examples per micro-batch (per_device_batch_size)
  int64_t batch_tokens = 0;             ///< > 0: micro-batches of up to this many tokens instead
  int64_t grad_accum_steps = 2;         ///< micro-batches per optimiser step
  bool packed = true;                   ///< a micro-batch's examples in one row (false: padded rows)
  double lr = 5e-5;                     ///< peak learning rate
  double weight_decay = 0.01;           ///< AdamW decoupled decay (norm weights and biases excluded)
  double beta1 = 0.9;                   ///< AdamW betas and epsilon (torch defaults)
  double beta2 = 0.999;
  double eps = 1e-8;
  config::Schedule schedule = config::Schedule::kCosine;  ///< cosine | constant, after the warm-up
  double warmup_ratio = 0.01;           ///< share of all steps in linear warm-up (rounded up)
  double warmup_min_ratio = 0.0;        ///< the warm-up rises from this share of lr (as train.warmup_min_ratio)
  double grad_clip = 1.0;               ///< global gradient-norm clip (0 = off; transformers' default 1)
  int64_t eval_steps = 0;               ///< validate every N steps (0 = after each epoch)
  int64_t seed = 42;                    ///< data order, LoRA init and dropout
  int64_t threads = 0;                  ///< intra-op threads (0 = all cores)
  int64_t log_every = 10;               ///< progress line every N steps
  bool gradient_checkpointing = false;  ///< recompute blocks in backward
  std::string device = "cpu";           ///< cpu | cuda | cuda:N
  config::Precision precision = config::Precision::kFp32;  ///< fp32 | bf16 (training forward passes under bfloat16 autocast; llm/precision.h)
  /// Under `seqrec launch`: 1 shards the AdamW moments by parameter across ranks, 2 also reduces
  /// each gradient to its owner only, 3 also keeps each decoder block's parameters on their owner
  /// outside its forward and backward (train/zero.h, as train.zero_stage); 0 = plain data parallelism.
  int64_t zero_stage = 0;
  bool zero_prefetch = true;            ///< zero_stage 3: gather the next block (and reduce gradients) while one computes
  /// ZeRO's resume state: sharded (each rank writes its own moments beside the state, which names
  /// them; every rank must see the state's folder) | consolidated (rank 0 gathers all moments into it)
  config::ZeroState zero_state = config::ZeroState::kSharded;
  FinetuneLoraOptions lora;             ///< finetune.lora
};

/// Rows [first, end) of the token embeddings (and of an untied output layer) start at the mean of
/// rows [0, first), the tokens the tokenizer had before; the matrices grow when `end` exceeds them.
/// (Qwen-style checkpoints have more rows than tokens: their unused rows are not averaged.)
void init_added_token_rows(llm::DecoderLmImpl& lm, int64_t first, int64_t end);

/// Reads and validates `finetune:`; throws ConfigError with the key's path.
FinetuneOptions read_finetune_options(config::ConfigNode node);

/// What a run did.
struct FinetuneSummary {
  int64_t added_tokens = 0;      ///< tokens new to the tokenizer
  int64_t train_examples = 0;
  int64_t valid_examples = 0;
  int64_t steps = 0;             ///< optimiser steps run
  double train_loss = 0;         ///< token-mean loss over the last epoch
  double best_valid_loss = std::numeric_limits<double>::quiet_NaN();  ///< NaN without validation
  int64_t exported_step = 0;     ///< step of the model in out_dir (best validation, else the last)
  double seconds = 0;            ///< wall time of the training loop
};

/// How one invocation of a run goes.
struct FinetuneInvocation {
  bool resume = false;           ///< continue after the last finished epoch of <out_dir>.resume.safetensors
  int64_t stop_after_epoch = 0;  ///< > 0: return after this epoch (a time-boxed part of a longer run)
  /// Data parallelism (`seqrec launch -- finetune`): the job's group, null in one process. An
  /// optimiser step then takes grad_accum_steps micro-batches on every rank (world x
  /// grad_accum_steps in all, dealt round-robin), its gradient equal to one process's with
  /// grad_accum_steps x world; rank 0 writes out_dir, the resume state and the log.
  std::shared_ptr<dist::ProcessGroup> group;
  int64_t local_rank = 0;        ///< this rank's index on its machine (its CUDA device with device: cuda)
};

/// Runs the fine-tuning; writes options.out_dir (with `config_yaml` as seqrec_finetune.yaml and the
/// validation log as metrics.jsonl) and, after every epoch, the state to resume from
/// (<out_dir>.resume.safetensors: trained weights, AdamW moments, counters). Resuming continues
/// after the state's last epoch (the options its trajectory depends on must be unchanged) and gives
/// the uninterrupted run's result on CPU. Throws ConfigError / DataError / CheckpointError.
FinetuneSummary run_finetune(const FinetuneOptions& options, const std::string& config_yaml,
                             const FinetuneInvocation& invocation = {});

}  // namespace seqrec::train
