// libFuzzer target: LSVCR's two-behaviour reader (prepare_lsvcr), the store it writes
// (LsvcrStore::load) and the split (split_lsvcr). The input holds the four TSV files separated by
// NUL bytes: videos.tsv, comments.tsv, video_history.tsv, comment_history.tsv. A folder it accepts
// must load back with every id in range and every history in time order, and split into samples
// whose bounds lie inside the histories; anything else than a seqrec::Error is a finding.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "seqrec/data/lsvcr_data.h"

namespace {

void check_history(const seqrec::data::LsvcrHistory& h, int64_t max_id) {
  if (h.ids.size() != h.timestamps.size()) seqrec::fuzz::finding("ids and timestamps differ in length");
  for (size_t i = 0; i < h.ids.size(); ++i) {
    if (h.ids[i] < 1 || h.ids[i] > max_id) seqrec::fuzz::finding("history id out of range");
    if (i > 0 && h.timestamps[i] < h.timestamps[i - 1]) seqrec::fuzz::finding("history out of time order");
  }
}

void check_samples(const std::vector<seqrec::data::LsvcrSample>& samples, const seqrec::data::LsvcrStore& s) {
  for (const auto& x : samples) {
    if (x.user < 0 || x.user >= s.num_users()) seqrec::fuzz::finding("sample user out of range");
    const auto u = static_cast<size_t>(x.user);
    if (x.video_end < 0 || x.video_end > static_cast<int64_t>(s.video_histories[u].ids.size()) || x.comment_end < 0 ||
        x.comment_end > static_cast<int64_t>(s.comment_histories[u].ids.size()))
      seqrec::fuzz::finding("sample history bound outside the history");
    if (x.target_video < 1 || x.target_video > s.num_videos) seqrec::fuzz::finding("sample video out of range");
    for (int64_t c : x.positive_comments)
      if (c < 1 || c > s.num_comments) seqrec::fuzz::finding("positive comment out of range");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kFiles[] = {"videos.tsv", "comments.tsv", "video_history.tsv", "comment_history.tsv"};
  const std::string& dir = seqrec::fuzz::scratch_dir();
  const std::string in = dir + "/in", out = dir + "/out";
  std::filesystem::create_directories(in);
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (const char* name : kFiles) {
    const size_t nul = rest.find('\0');
    const std::string_view part = rest.substr(0, nul);
    seqrec::fuzz::write_bytes(in + "/" + name, part.data(), part.size());
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  if (!seqrec::fuzz::expect_ok_or_error([&] { seqrec::data::prepare_lsvcr(in, out); })) return 0;
  try {
    const seqrec::data::LsvcrStore s = seqrec::data::LsvcrStore::load(out + "/" + seqrec::data::kLsvcrStoreFile);
    if (static_cast<int64_t>(s.comment_video.size()) != s.num_comments + 1) seqrec::fuzz::finding("comment_video size");
    for (int64_t c = 1; c <= s.num_comments; ++c)
      if (s.comment_video[c] < 1 || s.comment_video[c] > s.num_videos) seqrec::fuzz::finding("comment on no video");
    if (s.comment_histories.size() != s.video_histories.size()) seqrec::fuzz::finding("history counts differ");
    for (const auto& h : s.video_histories) check_history(h, s.num_videos);
    for (const auto& h : s.comment_histories) check_history(h, s.num_comments);
    const seqrec::data::LsvcrSplits splits = seqrec::data::split_lsvcr(s);
    for (const auto* split : {&splits.train, &splits.valid, &splits.test}) {
      check_samples(split->video, s);
      check_samples(split->comment, s);
    }
  } catch (const seqrec::Error& e) {
    seqrec::fuzz::finding(std::string("prepare_lsvcr wrote a store that does not load: ") + e.what());
  }
  return 0;
}
