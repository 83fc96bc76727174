// RQ-VAE (LC-Rec index/models/{rqvae,rq,vq,layers}.py, systems.md §3.2): an MLP encoder maps an item
// embedding x [B, d] to z [B, code_dim]; M residual vector quantisers pick one of C codes per level;
// an MLP decoder reconstructs x from the sum of the chosen code vectors.
//
//   r_0 = z;  c_l = argmin_k ||r_l - v^l_k||^2 (or Sinkhorn, see below);  q_l = v^l_{c_l}
//   q_l_ste = r_l + sg(q_l - r_l);  r_{l+1} = r_l - q_l_ste;  z_q = sum_l q_l_ste;  out = Dec(z_q)
//   loss = MSE(out, x) + quant_loss_weight * mean_l [ MSE(q_l, sg(r_l)) + beta * MSE(sg(q_l), r_l) ]
//
// As upstream, r_{l+1} is built from the straight-through value, so it carries no gradient: only
// level 0's commitment term and the reconstruction reach the encoder. Levels whose Sinkhorn epsilon
// is > 0 assign codes by Sinkhorn-Knopp over the batch (uniform code use) when asked (training
// forward); collision-rate evaluation and index generation ask per call.
//
// Parameter names are upstream's state-dict names (encoder.mlp_layers.1.weight,
// rq.vq_layers.0.embedding.weight, ...), so Python's RQVAE loads our safetensors directly.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::semantic_id {

/// The upstream encoder widths between the input and the code vector (index/run.sh).
const std::vector<int64_t>& upstream_hidden_dims();

/// Architecture of an RQ-VAE (saved with its checkpoint).
struct RqVaeOptions {
  int64_t input_dim = 0;                ///< d of the item embeddings
  std::vector<int64_t> hidden_dims = upstream_hidden_dims();  ///< encoder widths after the input; decoder mirrors
  int64_t code_dim = 32;                ///< e_dim: width of z and of every code vector
  int64_t num_levels = 4;               ///< M
  int64_t num_codes = 256;              ///< C codes per level
  double dropout = 0.0;                 ///< before every linear layer (upstream dropout_prob)
  bool batch_norm = false;              ///< BatchNorm1d after every hidden linear layer (upstream bn)
  std::string loss_type = "mse";        ///< reconstruction loss: mse | l1
  double quant_loss_weight = 1.0;       ///< weight of the quantisation loss
  double beta = 0.25;                   ///< commitment weight
  bool kmeans_init = true;              ///< codebooks from k-means on the first training batch (else U(-1/C, 1/C))
  int64_t kmeans_iters = 100;           ///< Lloyd iterations of that k-means
  int64_t kmeans_seed = 2024;           ///< seed of the k-means++ draws (level l uses a seed derived from it)
  std::vector<double> sk_epsilons = {0.0, 0.0, 0.0, 0.003};  ///< [M] Sinkhorn epsilon per level; 0 = argmin
  int64_t sk_iters = 50;                ///< Sinkhorn-Knopp iterations
};

/// An MLP as upstream MLPLayers: per layer Dropout, Linear, [BatchNorm1d], ReLU; no norm and no
/// activation after the last layer. Xavier-normal weights, zero biases.
class MlpLayersImpl : public torch::nn::Module {
 public:
  /// dims: the widths, input first ([d, h1, ..., out]).
  MlpLayersImpl(const std::vector<int64_t>& dims, double dropout, bool batch_norm);
  /// x [B, dims.front()] -> [B, dims.back()].
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential mlp_layers{nullptr};
};
TORCH_MODULE(MlpLayers);

/// One quantisation level's output.
struct QuantizerOutput {
  torch::Tensor quantized;  ///< [B, D] straight-through code vectors (value: codes, gradient: identity)
  torch::Tensor loss;       ///< scalar: codebook + beta * commitment
  torch::Tensor codes;      ///< [B] int64
};

/// One codebook level (upstream VectorQuantizer).
class VectorQuantizerImpl : public torch::nn::Module {
 public:
  /// seed: this level's k-means seed.
  VectorQuantizerImpl(int64_t num_codes, int64_t code_dim, const RqVaeOptions& options, uint64_t seed);
  /// r [B, D] -> codes and straight-through vectors. sk_epsilon > 0 assigns by Sinkhorn-Knopp.
  /// In training mode, an uninitialised codebook is first set by k-means on r (kmeans_init).
  QuantizerOutput forward(const torch::Tensor& r, double sk_epsilon);
  /// Squared distances of r [B, D] to every code: [B, C].
  torch::Tensor distances(const torch::Tensor& r) const;
  /// Whether the codebook has been set (always, without kmeans_init, or after loading a checkpoint).
  bool initialised() const { return initialised_; }
  void set_initialised() { initialised_ = true; }
  torch::nn::Embedding embedding{nullptr};

 private:
  RqVaeOptions options_;
  uint64_t seed_;
  bool initialised_;
};
TORCH_MODULE(VectorQuantizer);

/// All levels' output.
struct ResidualOutput {
  torch::Tensor quantized;  ///< [B, D] sum of the levels' straight-through vectors
  torch::Tensor loss;       ///< scalar: mean over levels of their losses
  torch::Tensor codes;      ///< [B, M] int64
};

/// M quantisers applied to successive residuals (upstream ResidualVectorQuantizer).
class ResidualQuantizerImpl : public torch::nn::Module {
 public:
  explicit ResidualQuantizerImpl(const RqVaeOptions& options);
  /// z [B, D]; sk_epsilons [M] (0 = argmin at that level).
  ResidualOutput forward(const torch::Tensor& z, const std::vector<double>& sk_epsilons);
  torch::nn::ModuleList vq_layers{nullptr};
};
TORCH_MODULE(ResidualQuantizer);

/// RQ-VAE forward output.
struct RqVaeOutput {
  torch::Tensor reconstruction;  ///< [B, d]
  torch::Tensor quant_loss;      ///< scalar
  torch::Tensor codes;           ///< [B, M] int64
};

/// The two losses of a batch.
struct RqVaeLoss {
  torch::Tensor total;  ///< recon + quant_loss_weight * quant_loss
  torch::Tensor recon;  ///< MSE (or L1) of the reconstruction
};

/// The RQ-VAE.
class RqVaeImpl : public torch::nn::Module {
 public:
  explicit RqVaeImpl(const RqVaeOptions& options);
  /// x [B, d]. use_sinkhorn: levels with sk_epsilon > 0 assign by Sinkhorn (upstream forward's
  /// use_sk=True, the training forward); false: argmin everywhere.
  RqVaeOutput forward(const torch::Tensor& x, bool use_sinkhorn = true);
  /// The loss of a forward output against its input x.
  RqVaeLoss compute_loss(const RqVaeOutput& output, const torch::Tensor& x) const;
  /// Codes [B, M] of x under no grad, with explicit per-level epsilons [M] (all 0 = argmin;
  /// upstream get_indices). Does not change train/eval mode.
  torch::Tensor codes(const torch::Tensor& x, const std::vector<double>& sk_epsilons);
  const RqVaeOptions& options() const { return options_; }
  MlpLayers encoder{nullptr};
  ResidualQuantizer rq{nullptr};
  MlpLayers decoder{nullptr};

 private:
  RqVaeOptions options_;
};
TORCH_MODULE(RqVae);

}  // namespace seqrec::semantic_id
