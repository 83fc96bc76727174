// The model registry: build a model by name from its `model:` config subtree.
#pragma once

#include <string>
#include <vector>

#include "seqrec/models/recommender.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// Builds the model named by `node["name"]`, reading and validating its options (unknown keys are
/// rejected by the caller's finish()). Throws ConfigError listing the known names.
SequenceRecommender make_model(config::ConfigNode node, const ModelContext& context);

/// Names of all registered models.
std::vector<std::string> model_names();

}  // namespace seqrec::models
