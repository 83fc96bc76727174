// Molar (arXiv 2412.18176, systems.md §1.10): HLLM's item and user LLMs with two additions.
//
// Post-alignment: beside the configured loss (the paper: pointwise BCE with one negative), a
// symmetric InfoNCE between the content user embedding (the user LLM's state at each sequence's
// last item) and the user embedding of a frozen ID model trained by `seqrec train` (SASRec or HSTU
// checkpoint), cosine / tau with in-batch negatives in both directions, weighted by alpha:
//   S = cos(P u_con_b, u_id_c) / tau  [B, B];  L_align = (CE(S, diag) + CE(S^T, diag)) / 2
// P is a learnable projection when the two dimensions differ (else the identity). The ID model is
// not a submodule: it is not saved, trained or moved with Molar; `seqrec train` installs it.
//
// Images: per-item image features -- precomputed (safetensors [V, d_img], row r = item r + 1), or
// the patch tokens of a CLIP / SigLIP / Qwen2-VL vision tower (llm/vision_tower.h; Qwen2-VL's are
// its merged tokens) over the item pictures --
// go through a projector (Linear, GELU, Linear; or none) to soft tokens at the [Img] slot of each item's prompt,
// between its text and the [Cur_Item] slot (HLLM's [ITEM]), whose final hidden state is the item
// embedding. `inputs: text | image | both` switches the item side for the paper's ablations.
//
// [User] slot (`user_token: true`): DUEG reads "the item embeddings plus a [User] token" and the
// user embedding is the user LLM's final hidden state at that slot. Every prefix of a training
// window is a sample, so the slot follows every item in one pass of width 2W: items at even
// columns, slot i after item i with RoPE position i + 1 (the next free position of that prefix);
// items see items only (causal), slot i sees items 0..i and itself. Slot i's output is therefore
// exactly the user LLM over [items 0..i, [User]] alone (test). Eval of the last position appends one
// slot after the window (width W + 1). Without the slot the user embedding is the state at each
// item, as in HLLM.
#pragma once

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/llm/vision_tower.h"
#include "seqrec/models/hllm.h"

namespace seqrec::models {

/// `model.post_alignment:` -- alignment with a frozen ID model.
struct PostAlignmentOptions {
  std::string id_checkpoint;  ///< a `seqrec train` checkpoint of an ID model ("" = no post-alignment)
  double alpha = 0.1;         ///< weight of L_align in the total loss
  double tau = 0.07;          ///< temperature of the cosine logits
  int64_t id_dim = 0;         ///< the ID model's user-embedding size (0 = the LLMs' hidden size, no projection)
};

/// What the item LLM reads (Molar's ablations).
enum class ItemInputs { kText, kImage, kBoth };

/// `model.image.vision:` -- a CLIP / SigLIP / Qwen2-VL vision tower reading the item pictures.
struct VisionTowerOptions {
  std::string pretrained;          ///< HF folder ("" = from `config`)
  llm::VisionConfig config;        ///< used when pretrained is ""
  bool freeze = false;             ///< no gradient into the tower
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};  ///< CLIP's (SigLIP: 0.5)
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};
  /// Side the pictures are resized to (0 = the tower's image_size). Qwen2-VL only: any multiple of
  /// patch_size x spatial_merge_size (HF resizes each picture to its own; we use one size for all).
  int64_t image_size = 0;
};

/// `model.image:` -- per-item image features (precomputed, or from pictures through a vision tower)
/// and their projector.
struct ItemImageOptions {
  std::string features;       ///< safetensors (or .npy) [V, d_img], row r = item r + 1
  std::string tensor;         ///< tensor name inside the safetensors file ("" = its only tensor)
  std::string folder;         ///< pictures <folder>/<raw item id>.{png,jpg,jpeg} (with `vision`)
  bool allow_missing = false; ///< items without a usable picture get a black one (logged) instead of an error
  bool has_vision = false;    ///< `vision:` given: pictures through a vision tower, its patch tokens projected
  VisionTowerOptions vision;
  int64_t tokens = 1;         ///< soft tokens per feature vector (precomputed: per item; vision: per patch)
  /// `projector: mlp` (Linear, GELU, Linear to tokens x D) | `none` (the features are the soft
  /// tokens as they are: Qwen2-VL's merger output in the LLM's width, as the paper's MLLM reads them).
  bool projector = true;
};

/// `model:` of `name: molar`: HLLM's options plus the image path and the post-alignment.
struct MolarOptions {
  HllmOptions hllm;                     ///< the item and user LLMs (as `name: hllm` reads them)
  ItemInputs inputs = ItemInputs::kText;  ///< `inputs: text | image | both`
  ItemImageOptions image;
  PostAlignmentOptions post_alignment;
  bool user_token = false;              ///< the user embedding read at a learned [User] slot (the paper)
  /// Whether post-alignment is configured (an ID checkpoint is named).
  bool aligned() const { return !post_alignment.id_checkpoint.empty(); }
};

/// Reads and validates the `model:` node of `name: molar`.
MolarOptions read_molar_options(config::ConfigNode node, const ModelContext& context);

/// A model with a training objective beside the configured loss (train::compute_loss adds it).
class AuxiliaryLossModel {
 public:
  virtual ~AuxiliaryLossModel() = default;
  /// The extra loss of a training batch given the model's encode() output hidden [B, W, D];
  /// undefined when there is none.
  virtual torch::Tensor auxiliary_loss(const data::SequenceBatch& batch, const torch::Tensor& hidden) = 0;
};

/// Molar: HLLM (the base class) with image soft tokens and the post-alignment loss.
class MolarImpl : public HllmImpl, public AuxiliaryLossModel {
 public:
  /// `images`: undefined when options.inputs is text; else [V, d_img] precomputed features, or
  /// with image.has_vision the preprocessed pictures [V, C, S, S] (float32, item i at row i - 1).
  MolarImpl(const MolarOptions& options, std::shared_ptr<const data::ItemTokens> tokens, torch::Tensor images);

  /// Installs the frozen ID model (built for `id_max_seq_len`); throws ConfigError when its user
  /// embedding size is not post_alignment.id_dim.
  void set_id_model(SequenceRecommender id_model, int64_t id_max_seq_len);
  /// With a [User] slot: its state after every item ([B, W, D]; last_only in eval: [B, 1, D]),
  /// l2-normalised; without: HLLM's encode.
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  /// alpha x L_align (undefined without post-alignment).
  torch::Tensor auxiliary_loss(const data::SequenceBatch& batch, const torch::Tensor& hidden) override;
  /// The ID model's user embeddings [B, D_id] (last position; no gradient).
  torch::Tensor id_user_embeddings(const data::SequenceBatch& batch);
  /// The options it was built with.
  const MolarOptions& molar_options() const { return molar_; }
  /// Qwen2-VL's tower with one soft token per merged patch (projector none, or image.tokens 1):
  /// image_size / (patch_size x spatial_merge_size) on each side; else {0, 0}.
  std::pair<int64_t, int64_t> soft_token_grid() const override;

  llm::VisionTower vision{nullptr};                ///< image.has_vision only
  torch::nn::Sequential image_projector{nullptr};  ///< d_img -> tokens x D (images, unless projector: none)
  torch::nn::Linear align_projection{nullptr};     ///< D -> id_dim (only when they differ)
  torch::Tensor user_slot_token;                   ///< [D] the [User] slot's input vector (user_token only)

 protected:
  torch::Tensor item_soft_tokens(const std::vector<int64_t>& ids) override;
  bool item_text_enabled() const override { return molar_.inputs != ItemInputs::kImage; }
  int64_t item_tower_version() const override;

 private:
  MolarOptions molar_;
  torch::Tensor images_;          ///< [V, d_img] features or [V, C, S, S] pictures
  SequenceRecommender id_model_;  ///< frozen, not registered
  int64_t id_max_seq_len_ = 0;
};
TORCH_MODULE(Molar);

/// Molar's post-alignment loss from the content u_con [B, D] and ID u_id [B, D] user embeddings
/// (already projected to one size): symmetric InfoNCE over cosine / tau with in-batch negatives.
torch::Tensor post_alignment_loss(const torch::Tensor& u_con, const torch::Tensor& u_id, double tau);

}  // namespace seqrec::models
