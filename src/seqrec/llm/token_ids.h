// Token ids on their way to the model's device, checked against the vocabulary on the host.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace seqrec::llm {

/// `ids` (int64 on the host) copied to `device`. Ids bound for a GPU are checked against
/// `vocab_size` here, before the copy (check_token_ids; reading them back from the GPU would make
/// every forward wait for the device); CPU ids are checked by DecoderLmImpl::forward_hidden.
torch::Tensor token_ids_to(const torch::Tensor& ids, const torch::Device& device, int64_t vocab_size);

}  // namespace seqrec::llm
