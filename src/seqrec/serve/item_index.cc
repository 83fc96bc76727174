// faiss indexes over the item table (inner product, so that they rank as the exact scorer does).
#include "seqrec/serve/item_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>

#include <cmath>
#include <cstdio>

#include "seqrec/common/error.h"

namespace seqrec::serve {
namespace {

// Rows 1..V of the item table as one float32 block [V, D].
torch::Tensor item_rows(const torch::Tensor& items) {
  return items.slice(0, 1).to(torch::kFloat32).contiguous();
}

int64_t auto_nlist(int64_t v) {
  // faiss wants ~39 training points per centroid; 4 sqrt(V) lists is its rule of thumb.
  const int64_t by_rule = static_cast<int64_t>(4 * std::sqrt(static_cast<double>(v)));
  return std::max<int64_t>(1, std::min<int64_t>(by_rule, v / 39));
}

int64_t auto_pq_m(int64_t d) {
  for (int64_t m = d / 2; m >= 1; m /= 2)
    if (d % m == 0 && m <= 64) return m;
  return 1;
}

// Search-time parameters an index file does not fix: set from the options after a build or a load.
std::string tune(faiss::Index* index, const IndexOptions& o) {
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index)) {
    h->hnsw.efSearch = static_cast<int>(o.ef_search);
    return "hnsw(M=" + std::to_string(h->hnsw.nb_neighbors(1)) + ", efSearch=" + std::to_string(o.ef_search) + ")";
  }
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) {
    ivf->nprobe = static_cast<size_t>(std::min<int64_t>(o.nprobe, static_cast<int64_t>(ivf->nlist)));
    const std::string what = dynamic_cast<faiss::IndexIVFPQ*>(index) ? "ivfpq" : "ivfflat";
    std::string d = what + "(nlist=" + std::to_string(ivf->nlist) + ", nprobe=" + std::to_string(ivf->nprobe);
    if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(index))
      d += ", m=" + std::to_string(pq->pq.M) + ", bits=" + std::to_string(pq->pq.nbits);
    return d + ")";
  }
  return "faiss";
}

std::unique_ptr<faiss::Index> make_ivf(int64_t v, int64_t d, const IndexOptions& o) {
  const int64_t nlist = o.nlist > 0 ? o.nlist : auto_nlist(v);
  if (nlist > v)
    throw ConfigError("serve.index.nlist", std::to_string(nlist) + " lists for " + std::to_string(v) + " items: must be <= the items");
  auto quantizer = std::make_unique<faiss::IndexFlatIP>(d);
  std::unique_ptr<faiss::IndexIVF> index;
  if (o.kind == "ivfflat") {
    index = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, nlist, faiss::METRIC_INNER_PRODUCT);
  } else {
    const int64_t m = o.pq_m > 0 ? o.pq_m : auto_pq_m(d);
    if (d % m != 0)
      throw ConfigError("serve.index.pq_m", std::to_string(m) + " must divide the embedding dimension " + std::to_string(d));
    if ((int64_t{1} << o.pq_bits) > v)
      throw ConfigError("serve.index.pq_bits", std::to_string(o.pq_bits) + " bits = " + std::to_string(int64_t{1} << o.pq_bits) +
                                                   " centroids, more than the " + std::to_string(v) + " items to train them on");
    index = std::make_unique<faiss::IndexIVFPQ>(quantizer.get(), d, nlist, m, o.pq_bits, faiss::METRIC_INNER_PRODUCT);
  }
  index->own_fields = true;
  quantizer.release();
  return index;
}

}  // namespace

ItemIndex::ItemIndex(std::unique_ptr<faiss::Index> index, std::string description)
    : index_(std::move(index)), description_(std::move(description)) {}

ItemIndex::~ItemIndex() = default;

std::unique_ptr<ItemIndex> ItemIndex::build(const torch::Tensor& items, const IndexOptions& options) {
  const torch::Tensor rows = item_rows(items);
  const int64_t v = rows.size(0), d = rows.size(1);
  std::unique_ptr<faiss::Index> index;
  if (options.kind == "hnsw") {
    auto h = std::make_unique<faiss::IndexHNSWFlat>(d, options.hnsw_m, faiss::METRIC_INNER_PRODUCT);
    h->hnsw.efConstruction = static_cast<int>(options.ef_construction);
    index = std::move(h);
  } else if (options.kind == "ivfpq" || options.kind == "ivfflat") {
    index = make_ivf(v, d, options);
  } else {
    throw ConfigError("serve.index.kind", "'" + options.kind + "' is not a faiss index (hnsw, ivfpq, ivfflat)");
  }
  try {
    if (!index->is_trained) index->train(v, rows.data_ptr<float>());
    index->add(v, rows.data_ptr<float>());
  } catch (const faiss::FaissException& e) {
    throw ConfigError("serve.index", std::string("faiss could not build the index: ") + e.what());
  }
  std::string description = tune(index.get(), options);
  return std::unique_ptr<ItemIndex>(new ItemIndex(std::move(index), std::move(description)));
}

std::unique_ptr<ItemIndex> ItemIndex::load(const std::string& path, const torch::Tensor& items, const IndexOptions& options) {
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::read_index(path.c_str()));
  } catch (const faiss::FaissException& e) {
    throw CheckpointError(path + ": not a faiss index file (" + std::string(e.what()) + ")");
  }
  const int64_t v = items.size(0) - 1, d = items.size(1);
  if (index->ntotal != v || index->d != d)
    throw CheckpointError(path + ": the index holds " + std::to_string(index->ntotal) + " vectors of dimension " +
                          std::to_string(index->d) + ", the model has " + std::to_string(v) + " items of dimension " +
                          std::to_string(d) + " (built for another model?)");
  if (index->metric_type != faiss::METRIC_INNER_PRODUCT)
    throw CheckpointError(path + ": the index does not rank by inner product (not written by seqrec serve?)");
  std::string description = tune(index.get(), options);
  return std::unique_ptr<ItemIndex>(new ItemIndex(std::move(index), std::move(description)));
}

void ItemIndex::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  try {
    faiss::write_index(index_.get(), tmp.c_str());
  } catch (const faiss::FaissException& e) {
    throw Error(path + ": could not write the index: " + e.what());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": could not rename " + tmp + " into place");
}

std::vector<std::vector<int64_t>> ItemIndex::search(const torch::Tensor& states, int64_t n) const {
  const torch::Tensor q = states.to(torch::kFloat32).contiguous();
  const int64_t b = q.size(0);
  n = std::min<int64_t>(n, index_->ntotal);
  std::vector<float> distances(b * n);
  std::vector<faiss::Index::idx_t> labels(b * n);
  index_->search(b, q.data_ptr<float>(), n, distances.data(), labels.data());
  std::vector<std::vector<int64_t>> out(b);
  for (int64_t row = 0; row < b; ++row)
    for (int64_t j = 0; j < n; ++j)
      if (labels[row * n + j] >= 0) out[row].push_back(labels[row * n + j] + 1);
  return out;
}

int64_t ItemIndex::size() const { return index_->ntotal; }

}  // namespace seqrec::serve
