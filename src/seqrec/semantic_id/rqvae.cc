// RQ-VAE: MLP encoder/decoder and the residual vector quantiser (LC-Rec index/models/*).
#include "seqrec/semantic_id/rqvae.h"

#include <torch/torch.h>

#include "seqrec/common/random.h"
#include "seqrec/semantic_id/kmeans.h"
#include "seqrec/semantic_id/sinkhorn.h"

namespace seqrec::semantic_id {

const std::vector<int64_t>& upstream_hidden_dims() {
  static const std::vector<int64_t> dims = {2048, 1024, 512, 256, 128, 64};
  return dims;
}

MlpLayersImpl::MlpLayersImpl(const std::vector<int64_t>& dims, double dropout, bool batch_norm) {
  TORCH_CHECK(dims.size() >= 2, "MlpLayers needs at least an input and an output width");
  torch::nn::Sequential seq;
  const size_t last = dims.size() - 2;
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    // Upstream's order, which fixes the module indices (the state-dict names): Dropout, Linear,
    // [BatchNorm1d], [ReLU]; neither after the last layer.
    seq->push_back(torch::nn::Dropout(dropout));
    torch::nn::Linear linear(dims[i], dims[i + 1]);
    torch::nn::init::xavier_normal_(linear->weight);
    torch::nn::init::zeros_(linear->bias);
    seq->push_back(linear);
    if (batch_norm && i != last) seq->push_back(torch::nn::BatchNorm1d(dims[i + 1]));
    if (i != last) seq->push_back(torch::nn::ReLU());
  }
  mlp_layers = register_module("mlp_layers", seq);
}

torch::Tensor MlpLayersImpl::forward(const torch::Tensor& x) { return mlp_layers->forward(x); }

VectorQuantizerImpl::VectorQuantizerImpl(int64_t num_codes, int64_t code_dim, const RqVaeOptions& options,
                                         uint64_t seed)
    : options_(options), seed_(seed), initialised_(!options.kmeans_init) {
  embedding = register_module("embedding", torch::nn::Embedding(num_codes, code_dim));
  torch::NoGradGuard no_grad;
  if (options.kmeans_init) {
    embedding->weight.zero_();
  } else {
    embedding->weight.uniform_(-1.0 / static_cast<double>(num_codes), 1.0 / static_cast<double>(num_codes));
  }
}

torch::Tensor VectorQuantizerImpl::distances(const torch::Tensor& r) const {
  const auto& w = embedding->weight;                                                     // [C, D]
  return r.pow(2).sum(1, true) + w.pow(2).sum(1, true).t() - 2 * r.matmul(w.t());        // [B, C]
}

QuantizerOutput VectorQuantizerImpl::forward(const torch::Tensor& r, double sk_epsilon) {
  TORCH_CHECK(r.dim() == 2 && r.size(1) == embedding->weight.size(1), "VectorQuantizer: expected [B, ",
              embedding->weight.size(1), "], got ", r.sizes());
  if (!initialised_ && is_training()) {
    KMeansOptions km;
    km.num_clusters = embedding->weight.size(0);
    km.max_iters = options_.kmeans_iters;
    km.seed = seed_;
    auto centers = kmeans(r.detach(), km).centers;                                       // [C, D]
    torch::NoGradGuard no_grad;
    embedding->weight.copy_(centers);
    initialised_ = true;
  }
  QuantizerOutput out;
  {
    torch::NoGradGuard no_grad;
    auto d = distances(r);                                                               // [B, C]
    out.codes = sk_epsilon > 0 ? sinkhorn_codes(d, sk_epsilon, options_.sk_iters) : d.argmin(-1);  // [B]
  }
  auto q = embedding(out.codes);                                                         // [B, D]
  auto commitment = torch::mse_loss(q.detach(), r);
  auto codebook = torch::mse_loss(q, r.detach());
  out.loss = codebook + options_.beta * commitment;
  out.quantized = r + (q - r).detach();                                                  // straight-through
  return out;
}

ResidualQuantizerImpl::ResidualQuantizerImpl(const RqVaeOptions& options) {
  vq_layers = register_module("vq_layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < options.num_levels; ++l) {
    const uint64_t seed = derive_seed({static_cast<uint64_t>(options.kmeans_seed), static_cast<uint64_t>(l)});
    vq_layers->push_back(VectorQuantizer(options.num_codes, options.code_dim, options, seed));
  }
}

ResidualOutput ResidualQuantizerImpl::forward(const torch::Tensor& z, const std::vector<double>& sk_epsilons) {
  TORCH_CHECK(sk_epsilons.size() == vq_layers->size(), "ResidualQuantizer: ", vq_layers->size(),
              " levels, got ", sk_epsilons.size(), " epsilons");
  ResidualOutput out;
  torch::Tensor residual = z, total = torch::zeros_like(z);
  std::vector<torch::Tensor> losses, codes;
  for (size_t l = 0; l < vq_layers->size(); ++l) {
    QuantizerOutput level = vq_layers->ptr<VectorQuantizerImpl>(l)->forward(residual, sk_epsilons[l]);
    residual = residual - level.quantized;  // as upstream: the straight-through value, no gradient
    total = total + level.quantized;
    losses.push_back(level.loss);
    codes.push_back(level.codes);
  }
  out.quantized = total;                                                                 // [B, D]
  out.loss = torch::stack(losses).mean();
  out.codes = torch::stack(codes, -1);                                                   // [B, M]
  return out;
}

RqVaeImpl::RqVaeImpl(const RqVaeOptions& options) : options_(options) {
  TORCH_CHECK(static_cast<int64_t>(options.sk_epsilons.size()) == options.num_levels,
              "RqVae: sk_epsilons must have num_levels entries");
  std::vector<int64_t> dims = {options.input_dim};
  dims.insert(dims.end(), options.hidden_dims.begin(), options.hidden_dims.end());
  dims.push_back(options.code_dim);
  encoder = register_module("encoder", MlpLayers(dims, options.dropout, options.batch_norm));
  rq = register_module("rq", ResidualQuantizer(options));
  std::vector<int64_t> reversed(dims.rbegin(), dims.rend());
  decoder = register_module("decoder", MlpLayers(reversed, options.dropout, options.batch_norm));
}

RqVaeOutput RqVaeImpl::forward(const torch::Tensor& x, bool use_sinkhorn) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options_.input_dim, "RqVae: expected x [B, ", options_.input_dim,
              "], got ", x.sizes());
  auto z = encoder(x);                                                                   // [B, D]
  std::vector<double> eps = use_sinkhorn ? options_.sk_epsilons : std::vector<double>(options_.num_levels, 0.0);
  ResidualOutput q = rq(z, eps);
  RqVaeOutput out;
  out.reconstruction = decoder(q.quantized);                                             // [B, d]
  out.quant_loss = q.loss;
  out.codes = q.codes;                                                                   // [B, M]
  return out;
}

RqVaeLoss RqVaeImpl::compute_loss(const RqVaeOutput& output, const torch::Tensor& x) const {
  RqVaeLoss loss;
  loss.recon = options_.loss_type == "l1" ? torch::l1_loss(output.reconstruction, x)
                                          : torch::mse_loss(output.reconstruction, x);
  loss.total = loss.recon + options_.quant_loss_weight * output.quant_loss;
  return loss;
}

torch::Tensor RqVaeImpl::codes(const torch::Tensor& x, const std::vector<double>& sk_epsilons) {
  torch::NoGradGuard no_grad;
  return rq(encoder(x), sk_epsilons).codes;                                              // [B, M]
}

}  // namespace seqrec::semantic_id
