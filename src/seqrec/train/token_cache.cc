// Token caches on disk (see token_cache.h).
#include "seqrec/train/token_cache.h"

#include <fcntl.h>
#include <stdio.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::train {
namespace {

constexpr const char* kFormat = "seqrec-token-cache-1";
constexpr const char* kManifest = "manifest.json";

namespace fs = std::filesystem;

std::string shard_name(int64_t i) {
  char buf[48];  // "shard-" + up to 20 digits + ".safetensors"
  std::snprintf(buf, sizeof buf, "shard-%05ld.safetensors", long(i));
  return buf;
}

// True when `dir` holds a token cache seqrec wrote and nothing else.
bool is_our_cache(const std::string& dir, std::string* why) {
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file(dir + "/" + kManifest));
  } catch (const std::exception&) {
    *why = "it has no readable " + std::string(kManifest);
    return false;
  }
  if (manifest.value("format", "") != kFormat) {
    *why = std::string(kManifest) + " is not a " + kFormat + " manifest";
    return false;
  }
  std::map<std::string, bool> ours = {{kManifest, true}};
  for (const auto& s : manifest.at("shards")) ours[s.get<std::string>()] = true;
  for (const auto& entry : fs::directory_iterator(dir))
    if (!ours.count(entry.path().filename().string())) {
      *why = "it holds '" + entry.path().filename().string() + "', which seqrec did not write";
      return false;
    }
  return true;
}

}  // namespace

std::string model_fingerprint(const torch::nn::Module& model) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  for (const auto& [name, t] : model_state(model)) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    mix(name.data(), name.size());
    for (int64_t s : c.sizes()) mix(&s, sizeof s);
    mix(c.data_ptr(), c.nbytes());
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void save_token_cache(const std::string& dir, const models::TokenCache& cache, const TokenCacheInfo& info) {
  std::string why;
  if (path_exists(dir) && !is_our_cache(dir, &why))
    throw Error(dir + ": exists and is not a token cache seqrec wrote (" + why + "); not replacing it");
  clean_stale_temps(dir);
  const std::string tmp = temp_path_for(dir);
  fs::remove_all(tmp);
  make_dirs(tmp);
  const int64_t users = cache.user_ids.size(0), per = std::max<int64_t>(1, info.users_per_shard);
  nlohmann::json manifest = {{"format", kFormat},           {"fingerprint", info.fingerprint},
                             {"split", info.split},         {"users", users},
                             {"layers", cache.keys.size()}, {"shards", nlohmann::json::array()}};
  for (int64_t begin = 0, i = 0; begin < users || (users == 0 && i == 0); begin += per, ++i) {
    const int64_t n = std::min(per, users - begin);
    NamedTensors t = {{"user_ids", cache.user_ids.narrow(0, begin, n)},
                      {"old_hashes", cache.old_hashes.narrow(0, begin, n)},
                      {"distances", cache.distances.narrow(0, begin, n)},
                      {"timestamps", cache.timestamps.narrow(0, begin, n)}};
    for (size_t l = 0; l < cache.keys.size(); ++l) {
      t.emplace_back("keys." + std::to_string(l), cache.keys[l].narrow(0, begin, n));
      t.emplace_back("values." + std::to_string(l), cache.values[l].narrow(0, begin, n));
    }
    save_tensors(tmp + "/" + shard_name(i), t,
                 {{"format", kFormat}, {"fingerprint", info.fingerprint}, {"split", info.split}});
    manifest["shards"].push_back(shard_name(i));
  }
  write_file_atomic(tmp + "/" + kManifest, manifest.dump(2) + "\n");  // last: the cache is complete
  if (!path_exists(dir)) {
    fs::rename(tmp, dir);
    return;
  }
  // Swap the new directory in with one call, so that a reader sees the old cache or the new one.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0)
    throw Error(dir + ": cannot swap in the new cache (" + std::string(std::strerror(errno)) + ")");
  fs::remove_all(tmp);  // the old cache, checked above to hold only seqrec's files
}

models::TokenCache load_token_cache(const std::string& dir, const std::string& fingerprint, const std::string& split) {
  std::string why;
  if (!path_exists(dir)) throw CheckpointError(dir + ": no such token cache (run seqrec compress)");
  if (!is_our_cache(dir, &why)) throw CheckpointError(dir + ": not a complete token cache: " + why);
  const auto manifest = nlohmann::json::parse(read_file(dir + "/" + kManifest));
  if (manifest.at("fingerprint") != fingerprint)
    throw CheckpointError(dir + ": compressed with other weights (fingerprint " +
                          manifest.at("fingerprint").get<std::string>() + ", this checkpoint's is " + fingerprint +
                          "): run seqrec compress with this checkpoint");
  if (!split.empty() && manifest.at("split") != split)
    throw CheckpointError(dir + ": compressed for split '" + manifest.at("split").get<std::string>() +
                          "', not '" + split + "' (the old items differ)");
  const int64_t layers = manifest.at("layers").get<int64_t>();
  std::map<std::string, std::vector<torch::Tensor>> parts;
  for (const auto& s : manifest.at("shards")) {
    const std::string path = dir + "/" + s.get<std::string>();
    std::map<std::string, std::string> meta;
    for (auto& [name, t] : load_tensors(path, &meta)) parts[name].push_back(t);
    if (meta["fingerprint"] != fingerprint) throw CheckpointError(path + ": from another compress run (fingerprint)");
  }
  auto cat = [&](const std::string& name) {
    auto it = parts.find(name);
    if (it == parts.end()) throw CheckpointError(dir + ": missing tensor '" + name + "'");
    return torch::cat(it->second, 0);
  };
  models::TokenCache cache;
  cache.user_ids = cat("user_ids");
  cache.old_hashes = cat("old_hashes");
  cache.distances = cat("distances");
  cache.timestamps = cat("timestamps");
  for (int64_t l = 0; l < layers; ++l) {
    cache.keys.push_back(cat("keys." + std::to_string(l)));
    cache.values.push_back(cat("values." + std::to_string(l)));
  }
  if (cache.user_ids.size(0) != manifest.at("users").get<int64_t>())
    throw CheckpointError(dir + ": the shards hold " + std::to_string(cache.user_ids.size(0)) + " users, the manifest " +
                          std::to_string(manifest.at("users").get<int64_t>()));
  if (cache.user_ids.size(0) > 1 && !cache.user_ids.diff().gt(0).all().item<bool>())
    throw CheckpointError(dir + ": user ids are not ascending");
  return cache;
}

}  // namespace seqrec::train
