// JSONL output of lcrec-data: one streamed, atomically renamed file per split, and a marker file.
#include "seqrec/data/lcrec_jsonl.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"

namespace seqrec::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// A file written line by line under a temp name and renamed into place by commit(); removed if
/// never committed.
class AtomicLines {
 public:
  explicit AtomicLines(std::string path) : path_(std::move(path)), tmp_((clean_stale_temps(path_), temp_path_for(path_))) {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (file_ == nullptr) throw Error("cannot write " + path_ + ": " + std::strerror(errno));
  }
  AtomicLines(const AtomicLines&) = delete;
  AtomicLines& operator=(const AtomicLines&) = delete;
  ~AtomicLines() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) std::remove(tmp_.c_str());
  }

  void line(const std::string& text) {
    if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fputc('\n', file_) == EOF)
      throw Error("cannot write " + path_ + ": " + std::strerror(errno));
    ++lines_;
  }

  int64_t commit() {
    const bool ok = std::fflush(file_) == 0;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || !closed) throw Error("cannot write " + path_ + ": " + std::strerror(errno));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw Error("cannot write " + path_ + ": rename failed: " + std::strerror(errno));
    committed_ = true;
    return lines_;
  }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
  int64_t lines_ = 0;
};

/// Files an earlier run listed in its marker ({} when there is none). Throws when out_dir holds
/// anything without a marker.
std::vector<std::string> files_of_earlier_run(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": exists and is not a directory");
  const std::string marker = dir + "/" + kLcRecDataMarker;
  if (!fs::exists(marker, ec)) {
    if (fs::directory_iterator(dir, ec) == fs::directory_iterator()) return {};
    throw Error(dir + ": exists, is not empty and has no " + kLcRecDataMarker +
                " (not written by seqrec lcrec-data); refusing to write into it: choose another out_dir");
  }
  std::vector<std::string> files;
  try {
    const json m = json::parse(read_file(marker));
    for (const auto& f : m.at("files")) files.push_back(f.at("name").get<std::string>());
  } catch (const json::exception& e) {
    throw Error(marker + ": unreadable (" + std::string(e.what()) + "); remove it if the folder is yours");
  }
  return files;
}

json report_json(const LcRecTaskReport& r) {
  json j = {{"task", lcrec_task_name(r.task)}, {"skipped", r.skipped}};
  if (r.skipped) {
    j["reason"] = r.reason;
  } else {
    j["candidates"] = r.candidates;
    j["unusable"] = r.unusable;
    j["samples"] = r.samples;
    j["examples_per_epoch"] = r.examples_per_epoch;
  }
  return j;
}

}  // namespace

std::string lcrec_example_json(const LcRecExample& e) {
  json j;
  j["prompt"] = e.prompt;
  j["response"] = e.response;
  j["task"] = lcrec_task_name(e.task);
  j["template"] = e.template_id;
  j["user"] = e.user >= 0 ? json(e.user) : json(nullptr);
  j["target_item"] = e.target_item > 0 ? json(e.target_item) : json(nullptr);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string lcrec_train_file(int64_t epoch) {
  return epoch == 0 ? "train.jsonl" : "train_epoch" + std::to_string(epoch) + ".jsonl";
}

std::vector<LcRecFileReport> write_lcrec_data(const LcRecTaskSet& set, const LcRecOutputOptions& out) {
  const std::vector<std::string> earlier = files_of_earlier_run(out.out_dir);
  make_dirs(out.out_dir);
  std::vector<LcRecFileReport> written;
  auto write = [&](const std::string& name, const std::function<void(AtomicLines&)>& fill) {
    AtomicLines file(out.out_dir + "/" + name);
    fill(file);
    written.push_back({name, file.commit()});
    log_info("lcrec: wrote %s/%s (%ld examples)", out.out_dir.c_str(), name.c_str(), long(written.back().lines));
  };
  for (int64_t epoch = 0; epoch < out.epochs; ++epoch)
    write(lcrec_train_file(epoch), [&](AtomicLines& f) {
      set.for_each_train_example(epoch, [&](const LcRecExample& e) { f.line(lcrec_example_json(e)); });
    });
  write("valid.jsonl", [&](AtomicLines& f) {
    for (const LcRecExample& e : set.valid_examples()) f.line(lcrec_example_json(e));
  });
  write("test.jsonl", [&](AtomicLines& f) {
    set.for_each_test_example([&](const LcRecExample& e) { f.line(lcrec_example_json(e)); });
  });
  if (!out.config_yaml.empty()) {
    write_file_atomic(out.out_dir + "/config.yaml", out.config_yaml);
    written.push_back({"config.yaml", 0});
  }

  json marker = {{"written_by", "seqrec lcrec-data"}, {"epochs", out.epochs}};
  marker["files"] = json::array();
  for (const LcRecFileReport& f : written) marker["files"].push_back({{"name", f.name}, {"lines", f.lines}});
  marker["tasks"] = json::array();
  for (const LcRecTaskReport& r : set.reports()) marker["tasks"].push_back(report_json(r));
  write_file_atomic(out.out_dir + "/" + kLcRecDataMarker, marker.dump(2) + "\n");

  for (const std::string& name : earlier) {
    const bool rewritten = std::any_of(written.begin(), written.end(), [&](const LcRecFileReport& f) { return f.name == name; });
    if (rewritten || name.find('/') != std::string::npos) continue;  // only plain names of ours
    std::error_code ec;
    fs::remove(out.out_dir + "/" + name, ec);
  }
  return written;
}

}  // namespace seqrec::data
