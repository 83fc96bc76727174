// models/registry.cc -- the only file that names every model.
#include "seqrec/models/registry.h"

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/image.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/models/hllm.h"
#include "seqrec/models/hstu.h"
#include "seqrec/models/llama_id.h"
#include "seqrec/models/molar.h"
#include "seqrec/models/most_pop.h"
#include "seqrec/models/personalized_hstu.h"
#include "seqrec/models/sasrec.h"
#include "seqrec/semantic_id/embedding_file.h"

namespace seqrec::models {
namespace {

SequenceRecommender build_sasrec(config::ConfigNode node, const ModelContext& context) {
  return std::make_shared<SasRecImpl>(read_sasrec_options(node, context));
}

SequenceRecommender build_hstu(config::ConfigNode node, const ModelContext& context) {
  HstuOptions hstu = read_hstu_options(node, context);
  if (!node.has("personalized")) return std::make_shared<HstuImpl>(hstu);
  // PerSRec: learnable user tokens over a long window (systems.md §6).
  return std::make_shared<PersonalizedHstuImpl>(
      hstu, read_personalized_options(node.child("personalized"), context.max_seq_len));
}

SequenceRecommender build_llama_id(config::ConfigNode node, const ModelContext& context) {
  return std::make_shared<LlamaIdImpl>(read_llama_id_options(node, context));
}

SequenceRecommender build_most_pop(config::ConfigNode, const ModelContext& context) {
  return std::make_shared<MostPopImpl>(context.num_items, context.item_counts);
}

SequenceRecommender build_hllm(config::ConfigNode node, const ModelContext& context) {
  if (context.data_dir.empty()) throw ConfigError(node.path(), "hllm needs the prepared data directory (data.dir)");
  auto tokens = std::make_shared<const data::ItemTokens>(
      data::ItemTokens::load(context.data_dir + "/" + data::kItemTokensFile));
  return std::make_shared<HllmImpl>(read_hllm_options(node, context), std::move(tokens));
}

// The side pictures are resized to: the tower's image_size, or for Qwen2-VL (no position table)
// model.image.vision.image_size when given.
int64_t resized_side(const VisionTowerOptions& vision, const llm::VisionConfig& vc) {
  if (vision.image_size == 0 || vision.image_size == vc.image_size) return vc.image_size;
  const std::string key = "model.image.vision.image_size";
  if (!vc.qwen2_vl())
    throw ConfigError(key, std::to_string(vision.image_size) + ": a " + vc.model_type + " tower reads " +
                               std::to_string(vc.image_size) + "-pixel pictures only (its position table)");
  const int64_t unit = vc.patch_size * vc.spatial_merge_size;
  if (vision.image_size % unit != 0)
    throw ConfigError(key, std::to_string(vision.image_size) + " is not a multiple of patch_size x spatial_merge_size = " +
                               std::to_string(unit));
  return vision.image_size;
}

// Precomputed features [V, d], or the preprocessed pictures [V, C, S, S] the vision tower reads.
torch::Tensor load_molar_images(const ItemImageOptions& image, const std::string& data_dir) {
  if (!image.has_vision) return semantic_id::read_embeddings(image.features, image.tensor);
  const llm::VisionConfig vc =
      image.vision.pretrained.empty() ? image.vision.config : llm::read_vision_config(image.vision.pretrained);
  data::ImagePreprocessOptions pre;
  pre.size = resized_side(image.vision, vc);
  pre.mean = image.vision.image_mean;
  pre.std = image.vision.image_std;
  const auto catalog = data::ItemCatalog::load(data_dir);
  std::vector<float> px = data::load_item_images(catalog, image.folder, pre, image.allow_missing);
  const int64_t v = catalog.num_items();
  return torch::from_blob(px.data(), {v, 3, pre.size, pre.size}, torch::kFloat).clone();  // [V, 3, S, S]
}

SequenceRecommender build_molar(config::ConfigNode node, const ModelContext& context) {
  if (context.data_dir.empty()) throw ConfigError(node.path(), "molar needs the prepared data directory (data.dir)");
  MolarOptions options = read_molar_options(node, context);
  auto tokens = std::make_shared<const data::ItemTokens>(
      data::ItemTokens::load(context.data_dir + "/" + data::kItemTokensFile));
  torch::Tensor images;
  if (options.inputs != ItemInputs::kText) images = load_molar_images(options.image, context.data_dir);
  return std::make_shared<MolarImpl>(options, std::move(tokens), images);
}

struct ModelEntry {
  const char* name;
  SequenceRecommender (*build)(config::ConfigNode node, const ModelContext& context);
};

const ModelEntry kModels[] = {
    {"sasrec", build_sasrec},
    {"hstu", build_hstu},
    {"llama_id", build_llama_id},
    {"most_pop", build_most_pop},
    {"hllm", build_hllm},
    {"molar", build_molar},
};

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& e : kModels) names.emplace_back(e.name);
  return names;
}

SequenceRecommender make_model(config::ConfigNode node, const ModelContext& context) {
  const std::string name = node.require<std::string>("name");
  for (const auto& e : kModels)
    if (name == e.name) return e.build(node, context);
  std::string list;
  for (const auto& n : model_names()) list += (list.empty() ? "" : ", ") + n;
  throw ConfigError(node.path() + ".name", "unknown model '" + name + "' (known: " + list + ")");
}

}  // namespace seqrec::models
