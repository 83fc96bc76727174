// The serving core: loading, id resolution, one forward per batch, exact and index top-k.
#include "seqrec/serve/recommender_service.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/data/batcher.h"
#include "seqrec/serve/item_index.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::serve {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string at(const std::string& prefix, const std::string& key) { return prefix.empty() ? key : prefix + "." + key; }

// The k best (score, id) pairs seen: highest score first, the lower id first among equal scores.
class TopKHeap {
 public:
  explicit TopKHeap(int64_t k) : k_(k) { heap_.reserve(k); }
  void push(float score, int64_t id) {
    if (!(score > -std::numeric_limits<float>::infinity())) return;  // masked (-inf) or NaN
    if (static_cast<int64_t>(heap_.size()) < k_) {
      heap_.emplace_back(score, id);
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    } else if (k_ > 0 && better(score, id, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), worse_first);
      heap_.back() = {score, id};
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    }
  }
  int64_t size() const { return static_cast<int64_t>(heap_.size()); }
  void finish(Ranked* out) {
    std::sort(heap_.begin(), heap_.end(), [](const Entry& a, const Entry& b) { return better(a.first, a.second, b); });
    out->ids.clear();
    out->scores.clear();
    for (const Entry& e : heap_) {
      out->ids.push_back(e.second);
      out->scores.push_back(e.first);
    }
  }

 private:
  using Entry = std::pair<float, int64_t>;
  static bool better(float score, int64_t id, const Entry& e) { return score > e.first || (score == e.first && id < e.second); }
  // Heap order: the worst entry on top.
  static bool worse_first(const Entry& a, const Entry& b) { return better(a.first, a.second, b); }
  int64_t k_;
  std::vector<Entry> heap_;
};

bool is_masked(const std::vector<int64_t>& masked, int64_t id) { return std::binary_search(masked.begin(), masked.end(), id); }

// Top-k of one state over an explicit candidate list (allow list, index candidates), exact scores.
Ranked rank_candidates(const torch::Tensor& state, const torch::Tensor& items, const std::vector<int64_t>& candidates,
                       const Query& q) {
  std::vector<int64_t> kept;
  kept.reserve(candidates.size());
  for (int64_t id : candidates)
    if (!is_masked(q.masked, id)) kept.push_back(id);
  Ranked out;
  if (kept.empty()) return out;
  const torch::Tensor ids = torch::from_blob(kept.data(), {static_cast<int64_t>(kept.size())}, torch::kInt64);
  const torch::Tensor scores = items.index_select(0, ids).matmul(state).contiguous();  // [n]
  const float* s = scores.data_ptr<float>();
  TopKHeap heap(q.k);
  for (size_t i = 0; i < kept.size(); ++i) heap.push(s[i], kept[i]);
  heap.finish(&out);
  return out;
}

// Exact top-k of several states [B, D] over every item, block by block of the item table.
void rank_blocked(const torch::Tensor& states, const torch::Tensor& items, const std::vector<const Query*>& queries,
                  int64_t block, std::vector<Ranked*> out) {
  const int64_t b = states.size(0), v1 = items.size(0);
  std::vector<TopKHeap> heaps;
  for (int64_t row = 0; row < b; ++row) heaps.emplace_back(queries[row]->k);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t b0 = 1; b0 < v1; b0 += block) {
    const int64_t b1 = std::min(v1, b0 + block);
    const torch::Tensor scores = states.matmul(items.slice(0, b0, b1).t()).contiguous();  // [B, nb]
    float* s = scores.data_ptr<float>();
    const int64_t nb = b1 - b0;
    for (int64_t row = 0; row < b; ++row) {
      float* r = s + row * nb;
      const std::vector<int64_t>& masked = queries[row]->masked;
      for (auto it = std::lower_bound(masked.begin(), masked.end(), b0); it != masked.end() && *it < b1; ++it) r[*it - b0] = neg_inf;
      TopKHeap& heap = heaps[row];
      for (int64_t j = 0; j < nb; ++j) heap.push(r[j], b0 + j);
    }
  }
  for (int64_t row = 0; row < b; ++row) heaps[row].finish(out[row]);
}

std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace

RecommenderService::RecommenderService(ServiceData data, ServiceOptions options)
    : data_(std::move(data)), options_(std::move(options)) {
  snapshot_ = load(options_.checkpoint, 1, /*first=*/true);
}

RecommenderService::~RecommenderService() = default;

std::shared_ptr<const ModelSnapshot> RecommenderService::snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mutex_);
  return snapshot_;
}

std::shared_ptr<const ModelSnapshot> RecommenderService::load(const std::string& checkpoint, int64_t version, bool first) const {
  const auto start = std::chrono::steady_clock::now();
  if (is_directory(checkpoint)) {
    std::shared_ptr<ModelSnapshot> snap = load_generative(checkpoint);
    snap->version = version;
    snap->load_seconds = seconds_since(start);
    return snap;
  }
  auto snap = std::make_shared<ModelSnapshot>();
  if (auto lsvcr = options_.load_lsvcr ? options_.load_lsvcr(checkpoint) : nullptr) {
    if (lsvcr->num_videos() != data_.catalog.num_items())
      throw CheckpointError(checkpoint + ": built for " + std::to_string(lsvcr->num_videos()) + " videos, but " + data_.dir +
                            " has " + std::to_string(data_.catalog.num_items()) + " (a different prepared dataset?)");
    snap->items = lsvcr->item_table();
    snap->context.num_items = lsvcr->num_videos();
    snap->context.max_seq_len = lsvcr->max_history();
    snap->lsvcr = std::move(lsvcr);
  } else {
    train::LoadedModel loaded = train::load_checkpoint(checkpoint, data_.dir);
    if (loaded.context.num_items != data_.catalog.num_items())
      throw CheckpointError(checkpoint + ": built for " + std::to_string(loaded.context.num_items) + " items, but " +
                            data_.dir + " has " + std::to_string(data_.catalog.num_items()) + " (a different prepared dataset?)");
    if (options_.prepare_model) options_.prepare_model(*loaded.model);
    loaded.model->eval();
    {
      torch::NoGradGuard no_grad;
      // Embedded once here (HLLM: the item LLM over the whole catalogue, kept in the model's cache too).
      snap->items = loaded.model->all_item_embeddings().to(torch::kCPU, torch::kFloat32).contiguous();
    }
    snap->model = loaded.model;
    snap->context = loaded.context;
  }
  snap->version = version;
  snap->checkpoint = checkpoint;
  snap->index_description = "exact";
  const IndexOptions& io = options_.index;
  if (io.kind != "exact") {
    const auto t = std::chrono::steady_clock::now();
    std::shared_ptr<const ItemIndex> index;
    // The index file belongs to the model served at start; a reloaded model gets a fresh index.
    if (first && !options_.index_file.empty() && path_exists(options_.index_file)) {
      index = ItemIndex::load(options_.index_file, snap->items, io);
      log_info("serve: read the %s index from %s", index->description().c_str(), options_.index_file.c_str());
    } else {
      index = ItemIndex::build(snap->items, io);
      log_info("serve: built the %s index over %ld items in %.2fs", index->description().c_str(), long(index->size()),
               seconds_since(t));
      if (!options_.save_index.empty()) {
        index->save(options_.save_index);
        log_info("serve: wrote the index to %s", options_.save_index.c_str());
      }
    }
    snap->index = index;
    snap->index_description = index->description();
    measure_recall(*snap);
  }
  snap->load_seconds = seconds_since(start);
  return snap;
}

std::shared_ptr<ModelSnapshot> RecommenderService::load_generative(const std::string& folder) const {
  if (!options_.load_generative)
    throw CheckpointError(folder + ": a folder (an LC-Rec fine-tuning run?), and this service loads no generative models");
  if (options_.index.kind != "exact")
    throw ConfigError("serve.index.kind", "'" + options_.index.kind + "': " + folder +
                                              " is a generative model (LC-Rec), which ranks by beam search; it has no item "
                                              "table to index (use exact)");
  auto snap = std::make_shared<ModelSnapshot>();
  snap->generative = options_.load_generative(folder);
  if (snap->generative->num_items() != data_.catalog.num_items())
    throw CheckpointError(folder + ": its index has " + std::to_string(snap->generative->num_items()) + " items, but " +
                          data_.dir + " has " + std::to_string(data_.catalog.num_items()) + " (a different prepared dataset?)");
  snap->context.num_items = snap->generative->num_items();
  snap->checkpoint = folder;
  snap->index_description = snap->generative->description();
  return snap;
}

void RecommenderService::measure_recall(ModelSnapshot& snap) const {
  const IndexOptions& io = options_.index;
  const int64_t num_users = data_.store.num_users();
  if (io.recall_users == 0 || num_users == 0) return;
  const int64_t n = std::min(io.recall_users, num_users);
  std::vector<Query> queries;
  for (int64_t i = 0; i < n; ++i) {
    RecommendRequest r;
    r.user = data_.users.raw_id(i * num_users / n);  // spread over the store
    r.k = io.recall_k;
    Query q = resolve_ids(r);  // the snapshot being measured is not serving yet
    if (!q.history.empty()) queries.push_back(std::move(q));
  }
  double hits = 0, wanted = 0;
  for (size_t begin = 0; begin < queries.size(); begin += 64) {
    std::vector<const Query*> chunk;
    for (size_t i = begin; i < std::min(queries.size(), begin + 64); ++i) chunk.push_back(&queries[i]);
    const std::vector<Ranked> exact = rank_exact(snap, chunk), approx = rank(snap, chunk);
    for (size_t i = 0; i < chunk.size(); ++i) {
      std::vector<int64_t> a = exact[i].ids, b = approx[i].ids;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      std::vector<int64_t> both;
      std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
      hits += static_cast<double>(both.size());
      wanted += static_cast<double>(a.size());
    }
  }
  snap.index_recall = wanted > 0 ? hits / wanted : 1.0;
  log_info("serve: %s recall@%ld against exact top-k over %zu users: %.4f", snap.index_description.c_str(),
           long(io.recall_k), queries.size(), snap.index_recall);
}

namespace {

// The LSVCR backend of a snapshot; 400 for any other model.
std::shared_ptr<const LsvcrBackend> lsvcr_of(const ModelSnapshot& snap) {
  if (!snap.lsvcr)
    throw invalid_request("video: " + snap.checkpoint + " ranks no comments (LSVCR checkpoints do; this one answers "
                                                        "/v1/recommend)");
  return snap.lsvcr;
}

}  // namespace

Query RecommenderService::resolve_comments(const CommentRequest& request) const {
  return lsvcr_of(*snapshot())->resolve_comments(request, data_.catalog, data_.users);
}

std::vector<Ranked> RecommenderService::rank_comments(const std::vector<const Query*>& queries) const {
  const auto snap = snapshot();
  std::vector<Ranked> out = lsvcr_of(*snap)->rank_comments(queries);
  for (Ranked& r : out) r.model_version = snap->version;
  return out;
}

RecommendResult RecommenderService::render_comments(const Ranked& ranked) const {
  return lsvcr_of(*snapshot())->render_comments(ranked);
}

Query RecommenderService::resolve(const RecommendRequest& request) const {
  const auto snap = snapshot();
  if (snap->generative && request.k > snap->generative->num_beams())
    throw invalid_request(at(request.field, "k") + ": must be <= " + std::to_string(snap->generative->num_beams()) +
                          " for this generative model (LC-Rec returns at most its eval.num_beams beams), got " +
                          std::to_string(request.k));
  Query q = resolve_ids(request);
  // LSVCR answers a user from their comments alone; every other model needs items.
  if (q.by_user && q.history.empty() && !(snap->lsvcr && snap->lsvcr->has_comment_history(q.user)))
    throw invalid_request(at(request.field, "user") + ": user '" + request.user + "' has no history to recommend from");
  return q;
}

Query RecommenderService::resolve_ids(const RecommendRequest& request) const {
  Query q;
  q.k = request.k;
  const std::string& p = request.field;
  if (!request.user.empty()) {
    const int64_t u = data_.users.find(request.user);
    if (u < 0) throw not_found(at(p, "user") + ": unknown user id '" + request.user + "' (not in " + data_.dir + "/users.tsv)");
    q.user = u;
    q.by_user = true;
    for (int32_t item : data_.store.items(u)) q.history.push_back(item);
    if (data_.store.has_timestamps())
      for (int64_t t : data_.store.timestamps(u)) q.history_ts.push_back(t);
  } else {
    if (options_.per_user_state)
      throw invalid_request(at(p, "history") + ": this model keeps per-user state (a token cache): ask with \"user\"");
    q.history.reserve(request.history.size());
    for (size_t i = 0; i < request.history.size(); ++i) {
      const int64_t id = data_.catalog.find(request.history[i]);
      if (id < 0)
        throw not_found(at(p, "history") + "[" + std::to_string(i) + "]: unknown item id '" + request.history[i] + "' (not in " +
                        data_.dir + "/items.tsv)");
      q.history.push_back(static_cast<int32_t>(id));
    }
  }
  auto dense = [&](const std::vector<std::string>& raw, const std::string& name) {
    std::vector<int64_t> out;
    out.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      const int64_t id = data_.catalog.find(raw[i]);
      if (id < 0) throw not_found(at(p, name) + "[" + std::to_string(i) + "]: unknown item id '" + raw[i] + "'");
      out.push_back(id);
    }
    return out;
  };
  q.masked = dense(request.deny, "deny");
  if (request.exclude_history) q.masked.insert(q.masked.end(), q.history.begin(), q.history.end());
  q.masked = sorted_unique(std::move(q.masked));
  q.allow = sorted_unique(dense(request.allow, "allow"));
  return q;
}

torch::Tensor RecommenderService::states(const ModelSnapshot& snap, const std::vector<const Query*>& queries) const {
  if (snap.lsvcr) return snap.lsvcr->user_states(queries);
  std::vector<data::EvalQuery> eq(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    const Query& q = *queries[i];
    eq[i].user = q.user;
    eq[i].history = {q.history.data(), static_cast<int64_t>(q.history.size())};
    if (!q.history_ts.empty()) {
      eq[i].history_ts = {q.history_ts.data(), static_cast<int64_t>(q.history_ts.size())};
      eq[i].target_ts = q.history_ts.back();  // as seqrec recommend: the request's time is the newest event's
    }
  }
  data::SequenceBatch batch = data::make_eval_batch(eq, 0, static_cast<int64_t>(eq.size()), snap.context.max_seq_len);
  const auto params = snap.model->parameters();
  if (!params.empty()) batch = batch.to(params.front().device());
  batch.last_only = true;
  torch::Tensor h = snap.model->encode(batch);                       // [B, W or 1, D]
  return h.select(1, h.size(1) - 1).to(torch::kCPU, torch::kFloat32).contiguous();  // [B, D]
}

std::vector<Ranked> RecommenderService::rank(const std::vector<const Query*>& queries) const {
  return rank(*snapshot(), queries);
}

std::vector<Ranked> RecommenderService::rank_exact(const ModelSnapshot& snap, const std::vector<const Query*>& queries) const {
  ModelSnapshot exact = snap;
  exact.index.reset();
  return rank(exact, queries);
}

std::vector<Ranked> RecommenderService::rank(const ModelSnapshot& snap, const std::vector<const Query*>& queries) const {
  torch::NoGradGuard no_grad;
  std::vector<Ranked> out(queries.size());
  if (snap.generative) {
    out = snap.generative->rank(queries);
    for (Ranked& r : out) r.model_version = snap.version;
    return out;
  }
  // make_eval_batch reads timestamps for all rows or none: one forward per kind.
  for (const bool timed : {false, true}) {
    std::vector<size_t> rows;
    for (size_t i = 0; i < queries.size(); ++i)
      if (queries[i]->history_ts.empty() != timed) rows.push_back(i);
    if (rows.empty()) continue;
    std::vector<const Query*> group;
    for (size_t i : rows) group.push_back(queries[i]);
    const torch::Tensor h = states(snap, group);  // [G, D]
    std::vector<int64_t> full_rows, index_rows;   // rows ranked over every item: by the blocked product, by the index
    for (size_t g = 0; g < group.size(); ++g) {
      const Query& q = *group[g];
      if (!q.allow.empty()) {
        out[rows[g]] = rank_candidates(h[g], snap.items, q.allow, q);
      } else {
        (snap.index ? index_rows : full_rows).push_back(static_cast<int64_t>(g));
      }
    }
    if (!index_rows.empty()) {
      // One search for the rows: k + |masked| candidates for the widest of them.
      int64_t n = 0;
      for (int64_t g : index_rows) n = std::max<int64_t>(n, group[g]->k + static_cast<int64_t>(group[g]->masked.size()));
      n = std::min<int64_t>(n, snap.index->size());
      const auto candidates = snap.index->search(h.index_select(0, torch::tensor(index_rows, torch::kInt64)), n);
      for (size_t i = 0; i < index_rows.size(); ++i) {
        const int64_t g = index_rows[i];
        out[rows[g]] = rank_candidates(h[g], snap.items, candidates[i], *group[g]);
        // Fewer than k left after masking while the catalogue has more: rank this one exactly.
        if (static_cast<int64_t>(out[rows[g]].ids.size()) < group[g]->k && n < snap.index->size()) full_rows.push_back(g);
      }
    }
    if (full_rows.empty()) continue;
    std::vector<const Query*> qs;
    std::vector<Ranked*> dst;
    for (int64_t g : full_rows) {
      qs.push_back(group[g]);
      dst.push_back(&out[rows[g]]);
    }
    const torch::Tensor idx = torch::tensor(full_rows, torch::kInt64);
    rank_blocked(h.index_select(0, idx), snap.items, qs, options_.block_items, dst);
  }
  for (Ranked& r : out) r.model_version = snap.version;
  return out;
}

RecommendResult RecommenderService::render(const Ranked& ranked) const {
  RecommendResult r;
  r.model_version = ranked.model_version;
  r.items.reserve(ranked.ids.size());
  for (size_t i = 0; i < ranked.ids.size(); ++i) r.items.push_back({data_.catalog.raw_id(ranked.ids[i]), ranked.scores[i]});
  return r;
}

std::vector<RecommendResult> RecommenderService::recommend(const std::vector<RecommendRequest>& requests) const {
  std::vector<Query> queries;
  queries.reserve(requests.size());
  for (const RecommendRequest& r : requests) queries.push_back(resolve(r));
  std::vector<const Query*> ptrs;
  for (const Query& q : queries) ptrs.push_back(&q);
  std::vector<RecommendResult> out;
  for (const Ranked& r : rank(ptrs)) out.push_back(render(r));
  return out;
}

ReloadReport RecommenderService::reload(const std::string& checkpoint) {
  std::lock_guard<std::mutex> serial(reload_mutex_);
  const auto start = std::chrono::steady_clock::now();
  const std::shared_ptr<const ModelSnapshot> current = snapshot();
  ReloadReport report;
  const std::string path = checkpoint.empty() ? current->checkpoint : checkpoint;
  try {
    std::shared_ptr<const ModelSnapshot> next = load(path, current->version + 1, /*first=*/false);
    {
      std::lock_guard<std::mutex> lock(snapshot_mutex_);
      snapshot_ = next;
    }
    report.ok = true;
    report.version = next->version;
    report.checkpoint = next->checkpoint;
  } catch (const std::exception& e) {
    report.error = e.what();
    report.version = current->version;
    report.checkpoint = current->checkpoint;
  }
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace seqrec::serve
