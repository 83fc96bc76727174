// Fine-tuning batches and loss.
#include "seqrec/train/sft_batch.h"

#include <torch/torch.h>

#include <algorithm>

#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/llm/token_ids.h"

namespace seqrec::train {

SftBatch collate_sft(const std::vector<const llm::TokenizedExample*>& examples, SftLayout layout) {
  TORCH_CHECK(!examples.empty(), "collate_sft: no examples");
  SftBatch b;
  b.is_packed = layout == SftLayout::kPacked;
  std::vector<int64_t> lengths;
  for (const auto* e : examples) {
    TORCH_CHECK(e->input_ids.size() >= 2 && e->labels.size() == e->input_ids.size(),
                "collate_sft: an example needs >= 2 tokens and one label per token");
    lengths.push_back(static_cast<int64_t>(e->input_ids.size()) - 1);
  }
  const int64_t rows = b.is_packed ? 1 : static_cast<int64_t>(examples.size());
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  const int64_t width = b.is_packed ? total : *std::max_element(lengths.begin(), lengths.end());
  b.input_ids = torch::zeros({rows, width}, torch::kLong);                                   // [B, L] or [1, T]
  b.positions = torch::zeros({rows, width}, torch::kLong);
  if (!b.is_packed) b.key_valid = torch::zeros({rows, width}, torch::kBool);
  auto* ids = b.input_ids.data_ptr<int64_t>();
  auto* pos = b.positions.data_ptr<int64_t>();
  std::vector<int64_t> target_index, target_ids;
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& e = *examples[i];
    // Packed: example i follows the previous ones in the single row; padded: row i from column 0.
    int64_t start = 0;
    if (b.is_packed) {
      for (size_t j = 0; j < i; ++j) start += lengths[j];
    } else {
      start = static_cast<int64_t>(i) * width;
    }
    for (int64_t t = 0; t < lengths[i]; ++t) {
      ids[start + t] = e.input_ids[t];
      pos[start + t] = t;
      if (e.labels[t + 1] != llm::kIgnoreLabel) {
        target_index.push_back(start + t);
        target_ids.push_back(e.labels[t + 1]);
      }
    }
    if (!b.is_packed) b.key_valid[static_cast<int64_t>(i)].narrow(0, 0, lengths[i]).fill_(true);
  }
  if (b.is_packed) b.packed = nn::pack_segments(lengths);
  b.target_index = torch::tensor(target_index, torch::kLong);                                // [N]
  b.target_ids = torch::tensor(target_ids, torch::kLong);                                    // [N]
  b.num_tokens = total;
  return b;
}

torch::Tensor sft_loss_sum(llm::DecoderLmImpl& lm, const SftBatch& batch) {
  const auto device = lm.model->embed_tokens->weight.device();
  if (batch.target_ids.numel() == 0) return torch::zeros({}, torch::TensorOptions().device(device));
  llm::DecoderInput in;
  in.input_ids = llm::token_ids_to(batch.input_ids, device, lm.config().vocab_size);
  in.positions = batch.positions.to(device);
  if (batch.is_packed) {
    in.packed = &batch.packed;
  } else {
    in.key_valid = batch.key_valid.to(device);
  }
  auto hidden = lm.forward_hidden(in);                                                        // [B, L, D]
  auto rows = hidden.reshape({-1, hidden.size(-1)}).index_select(0, batch.target_index.to(device));  // [N, D]
  auto logprobs = torch::log_softmax(lm.logits(rows).to(torch::kFloat), -1);                 // [N, V]
  return -logprobs.gather(1, batch.target_ids.to(device).unsqueeze(1)).sum();
}

StepLoss accumulate_gradients(llm::DecoderLmImpl& lm, const std::vector<SftBatch>& micro_batches,
                              const StepShare& share) {
  TORCH_CHECK((share.group == nullptr) == (share.reducer == nullptr),
              "accumulate_gradients: a data-parallel step needs both the group and the reducer");
  StepLoss s;
  for (const auto& b : micro_batches) {
    s.targets += b.target_ids.numel();
    s.tokens += b.num_tokens;
  }
  int64_t passes = 0;  // micro-batches with trained positions: this rank's, then the busiest rank's
  for (const auto& b : micro_batches) passes += b.target_ids.numel() > 0 ? 1 : 0;
  int64_t most_passes = passes;
  double world = 1;
  if (share.group != nullptr) {
    world = static_cast<double>(share.group->world_size());
    std::vector<double> counts = {double(s.targets), double(s.tokens)};
    if (share.filler != nullptr) {  // every rank's passes, one slot each
      counts.resize(2 + share.group->world_size(), 0.0);
      counts[2 + share.group->rank()] = static_cast<double>(passes);
    }
    const auto all = share.group->all_reduce_sum(counts);
    s.targets = static_cast<int64_t>(all[0]);
    s.tokens = static_cast<int64_t>(all[1]);
    for (size_t r = 2; r < all.size(); ++r) most_passes = std::max(most_passes, static_cast<int64_t>(all[r]));
  }
  if (share.filler != nullptr && passes < most_passes) {
    // Before the real passes, so that every rank's last backward is its communicating one (the
    // reducer's buckets then interleave with the blocks' collectives in the same order everywhere).
    TORCH_CHECK(share.filler->target_ids.numel() > 0, "accumulate_gradients: the filler has no trained position");
    for (int64_t k = passes; k < most_passes; ++k) {
      if (share.reducer != nullptr) share.reducer->set_sync(passes == 0 && k + 1 == most_passes);
      (sft_loss_sum(lm, *share.filler) * 0.0).backward();
    }
  }
  double total = 0;
  if (s.targets > 0) {
    // The last micro-batch with targets sends the accumulated sum; the others only accumulate.
    int64_t last = -1;
    for (size_t i = 0; i < micro_batches.size(); ++i)
      if (micro_batches[i].target_ids.numel() > 0) last = static_cast<int64_t>(i);
    for (size_t i = 0; i < micro_batches.size(); ++i) {
      const auto& b = micro_batches[i];
      if (b.target_ids.numel() == 0) continue;
      if (share.reducer != nullptr) share.reducer->set_sync(static_cast<int64_t>(i) == last);
      auto sum = sft_loss_sum(lm, b);
      (sum * (world / static_cast<double>(s.targets))).backward();
      total += sum.item<double>();
    }
  }
  if (share.reducer != nullptr) {
    share.reducer->set_sync(true);
    share.reducer->finish();  // also when this rank had nothing to add: the others wait for it
    total = share.group->all_reduce_sum(std::vector<double>{total})[0];
  }
  s.mean = s.targets > 0 ? total / static_cast<double>(s.targets) : 0.0;
  return s;
}

}  // namespace seqrec::train
