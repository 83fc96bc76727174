// The serving core, free of HTTP: a loaded checkpoint with its item table (embedded once at load),
// the prepared data's id maps, and exact or faiss top-k for batches of queries. Thread-safe; the
// model lives in an immutable snapshot held by shared_ptr, so reload() builds the new one aside and
// swaps it in while batches already running finish on the old one.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/models/recommender.h"
#include "seqrec/serve/generative_backend.h"
#include "seqrec/serve/lsvcr_ranker.h"
#include "seqrec/serve/query.h"
#include "seqrec/serve/request.h"
#include "seqrec/serve/serve_options.h"

namespace seqrec::serve {

class ItemIndex;

/// The prepared data a service answers over (fixed for its lifetime; a reloaded model must fit it).
struct ServiceData {
  std::string dir;                ///< prepared directory (models that read files from it: hllm)
  data::ItemCatalog catalog;      ///< raw <-> dense item ids, titles
  data::UserMap users;            ///< raw <-> dense user ids
  data::InteractionStore store;   ///< user histories (data.item_start/end_position applied)
};

/// How a service loads and ranks.
struct ServiceOptions {
  std::string checkpoint;             ///< .safetensors written by seqrec train
  int64_t block_items = 16384;        ///< items per block of the exact scorer
  IndexOptions index;                 ///< exact or a faiss index
  std::string index_file;             ///< read the faiss index from here at start (if it exists)
  std::string save_index;             ///< write the built faiss index here
  /// Called on every freshly loaded model before it serves (PerSRec: install its token cache).
  std::function<void(models::SequenceRecommenderImpl&)> prepare_model;
  bool per_user_state = false;        ///< the model keeps per-user state: history requests are refused
  /// Loads a folder checkpoint (LC-Rec) as a generative model; unset: folders are refused.
  GenerativeLoader load_generative;
  /// Loads an LSVCR checkpoint for its next-video task, or returns null when the file is none
  /// (then it loads as a `seqrec train` checkpoint); unset: no LSVCR.
  std::function<std::shared_ptr<const LsvcrBackend>(const std::string& checkpoint)> load_lsvcr;
};

/// One loaded model and everything derived from it; immutable once built. Either a ranking model
/// (model, items, index) or a generative one (generative; model and items empty).
struct ModelSnapshot {
  models::SequenceRecommender model;
  models::ModelContext context;       ///< num_items for both kinds; the rest for ranking models
  torch::Tensor items;                ///< [V+1, D] float32 CPU item table (row 0 = padding)
  std::shared_ptr<const GenerativeBackend> generative;  ///< LC-Rec: beam search instead of model/items
  std::shared_ptr<const LsvcrBackend> lsvcr;  ///< LSVCR: user states from it instead of model (items: its videos)
  std::shared_ptr<const ItemIndex> index;  ///< null: exact top-k
  std::string index_description;      ///< "exact", the faiss index's, or the generative model's
  double index_recall = -1;           ///< recall@recall_k of the index against exact at load (-1: not measured)
  int64_t version = 0;                ///< 1 for the first model, +1 per reload
  std::string checkpoint;             ///< where it came from
  double load_seconds = 0;            ///< load + item table + index time
};

/// What reload() did.
struct ReloadReport {
  bool ok = false;
  int64_t version = 0;          ///< the version serving after the call
  std::string checkpoint;       ///< the checkpoint serving after the call
  std::string error;            ///< why the new model was refused (ok = false)
  double seconds = 0;
};

/// The serving core.
class RecommenderService {
 public:
  /// Loads options.checkpoint against `data`; throws CheckpointError / ConfigError when it does not fit.
  RecommenderService(ServiceData data, ServiceOptions options);
  ~RecommenderService();
  RecommenderService(const RecommenderService&) = delete;
  RecommenderService& operator=(const RecommenderService&) = delete;

  /// Resolves raw ids to a Query; throws ApiError 404 naming the field for an unknown user or item,
  /// 400 for a request the model cannot answer (a user without history: LSVCR's may have comments only).
  Query resolve(const RecommendRequest& request) const;
  /// Top-k of each query with the current model: one forward for the batch, then exact or index
  /// top-k with the masked items removed and the allow lists applied.
  std::vector<Ranked> rank(const std::vector<const Query*>& queries) const;
  /// The same with a given snapshot (tests compare models).
  std::vector<Ranked> rank(const ModelSnapshot& snapshot, const std::vector<const Query*>& queries) const;
  /// Exact top-k with a snapshot, ignoring its index.
  std::vector<Ranked> rank_exact(const ModelSnapshot& snapshot, const std::vector<const Query*>& queries) const;
  /// Raw ids and scores of a ranked answer.
  RecommendResult render(const Ranked& ranked) const;
  /// LSVCR's comment ranking (POST /v1/comments): the request as a query (ApiError 400 for a model
  /// without comments, 404 for unknown ids), a batch of them ranked with one forward, raw ids out.
  Query resolve_comments(const CommentRequest& request) const;
  std::vector<Ranked> rank_comments(const std::vector<const Query*>& queries) const;
  RecommendResult render_comments(const Ranked& ranked) const;
  /// resolve + rank + render, without micro-batching.
  std::vector<RecommendResult> recommend(const std::vector<RecommendRequest>& requests) const;

  /// Loads `checkpoint` ("" = the current one again) into a new snapshot and swaps it in; on any
  /// failure the current model keeps serving and the report says why. Reloads are serialised.
  ReloadReport reload(const std::string& checkpoint = "");
  /// The model serving now.
  std::shared_ptr<const ModelSnapshot> snapshot() const;
  const ServiceData& data() const { return data_; }
  const ServiceOptions& options() const { return options_; }

 private:
  std::shared_ptr<const ModelSnapshot> load(const std::string& checkpoint, int64_t version, bool first) const;
  std::shared_ptr<ModelSnapshot> load_generative(const std::string& folder) const;
  void measure_recall(ModelSnapshot& snapshot) const;
  Query resolve_ids(const RecommendRequest& request) const;  // resolve without the serving model's limits
  torch::Tensor states(const ModelSnapshot& snapshot, const std::vector<const Query*>& queries) const;

  ServiceData data_;
  ServiceOptions options_;
  mutable std::mutex snapshot_mutex_;   // guards snapshot_ (the pointer, not the model)
  std::shared_ptr<const ModelSnapshot> snapshot_;
  std::mutex reload_mutex_;             // one reload at a time
};

}  // namespace seqrec::serve
