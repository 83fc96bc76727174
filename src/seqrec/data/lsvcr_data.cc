// LSVCR two-behaviour data: the TSV reader, the binary store and the per-task split.
#include "seqrec/data/lsvcr_data.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/owned_dir.h"
#include "seqrec/data/tsv.h"

namespace seqrec::data {
namespace {

constexpr char kMagic[8] = {'S', 'Q', 'L', 'S', 'V', 'C', 'R', '\0'};
constexpr int64_t kFormatVersion = 1;

/// One TSV file with a fixed header: calls fn(loc, fields) for each non-blank data line.
template <typename Fn>
void read_tsv(const std::string& path, const std::vector<std::string>& header, Fn fn) {
  const std::string buf = read_file(path);
  size_t pos = 0;
  int64_t line_no = 0;
  bool saw_header = false;
  while (pos < buf.size()) {
    size_t end = buf.find('\n', pos);
    if (end == std::string::npos) end = buf.size();
    std::string_view line(buf.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = end + 1;
    ++line_no;
    const std::string loc = path + ":" + std::to_string(line_no);
    if (line.empty()) continue;
    const auto f = split_tabs(line);
    if (!saw_header) {
      std::string want;
      for (const auto& h : header) want += (want.empty() ? "" : "<TAB>") + h;
      bool ok = f.size() == header.size();
      for (size_t i = 0; ok && i < f.size(); ++i) ok = f[i] == header[i];
      if (!ok) throw DataError(loc + ": expected header '" + want + "', got '" + std::string(line.substr(0, 80)) + "'");
      saw_header = true;
      continue;
    }
    if (f.size() != header.size())
      throw DataError(loc + ": expected " + std::to_string(header.size()) + " tab-separated fields, got " +
                      std::to_string(f.size()));
    fn(loc, f);
  }
  if (!saw_header) throw DataError(path + ": empty file: expected a header line");
}

int64_t parse_timestamp(const std::string& loc, std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size())
    throw DataError(loc + ": expected an integer timestamp, got '" + std::string(s) + "'");
  return v;
}

std::string tsv_safe(std::string_view s) {
  std::string out(s);
  std::replace(out.begin(), out.end(), '\t', ' ');
  return out;
}

/// Raw id -> dense id (1-based) of one id space, in first-seen order.
struct IdSpace {
  std::vector<std::string> raw{""};
  std::unordered_map<std::string, int64_t> index;
  int64_t add(const std::string& loc, std::string_view id, const char* what) {
    if (id.empty()) throw DataError(loc + ": empty " + std::string(what) + " id");
    auto [it, fresh] = index.emplace(std::string(id), static_cast<int64_t>(raw.size()));
    if (!fresh) throw DataError(loc + ": duplicate " + std::string(what) + " id '" + std::string(id) + "'");
    raw.emplace_back(id);
    return it->second;
  }
  int64_t find(std::string_view id) const {
    auto it = index.find(std::string(id));
    return it == index.end() ? -1 : it->second;
  }
};

/// Per-user raw events of one behaviour, users in first-seen order (shared user space).
struct RawEvents {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> per_user;  // (timestamp, dense id)
};

void read_history(const std::string& path, const char* id_column, const IdSpace& ids, const char* what,
                  std::unordered_map<std::string, int64_t>& users, std::vector<std::string>& user_raw,
                  RawEvents& events) {
  read_tsv(path, {"user_id", id_column, "timestamp"}, [&](const std::string& loc, const auto& f) {
    const int64_t id = ids.find(f[1]);
    if (id < 0) throw DataError(loc + ": unknown " + std::string(what) + " '" + std::string(f[1]) + "'");
    const int64_t ts = parse_timestamp(loc, f[2]);
    if (f[0].empty()) throw DataError(loc + ": empty user id");
    auto [it, fresh] = users.emplace(std::string(f[0]), static_cast<int64_t>(user_raw.size()));
    if (fresh) user_raw.emplace_back(f[0]);
    if (events.per_user.size() <= static_cast<size_t>(it->second)) events.per_user.resize(it->second + 1);
    events.per_user[it->second].emplace_back(ts, id);
  });
}

LsvcrHistory to_history(std::vector<std::pair<int64_t, int64_t>> events) {
  std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  LsvcrHistory h;
  for (const auto& [ts, id] : events) {
    h.timestamps.push_back(ts);
    h.ids.push_back(id);
  }
  return h;
}

// ---- binary I/O ----

void put_i64(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

void put_vec(std::string& out, const std::vector<int64_t>& v) {
  put_i64(out, static_cast<int64_t>(v.size()));
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
}

struct Reader {
  const std::string& buf;
  const std::string& path;
  size_t pos = 0;
  int64_t i64() {
    if (pos + 8 > buf.size()) throw DataError(path + ": truncated lsvcr store (at byte " + std::to_string(pos) + ")");
    int64_t v;
    std::memcpy(&v, buf.data() + pos, 8);
    pos += 8;
    return v;
  }
  std::vector<int64_t> vec() {
    const int64_t n = i64();
    // (n * 8 could wrap: compare against what is left instead.)
    if (n < 0 || static_cast<uint64_t>(n) > (buf.size() - pos) / 8)
      throw DataError(path + ": truncated lsvcr store (array of " + std::to_string(n) + " at byte " +
                      std::to_string(pos) + ")");
    std::vector<int64_t> v(static_cast<size_t>(n));
    if (!v.empty()) std::memcpy(v.data(), buf.data() + pos, v.size() * 8);  // data() may be null
    pos += v.size() * 8;
    return v;
  }
};

void put_histories(std::string& out, const std::vector<LsvcrHistory>& hs) {
  std::vector<int64_t> offsets{0}, ids, ts;
  for (const auto& h : hs) {
    ids.insert(ids.end(), h.ids.begin(), h.ids.end());
    ts.insert(ts.end(), h.timestamps.begin(), h.timestamps.end());
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
  put_vec(out, offsets);
  put_vec(out, ids);
  put_vec(out, ts);
}

std::vector<LsvcrHistory> get_histories(Reader& r) {
  const auto offsets = r.vec(), ids = r.vec(), ts = r.vec();
  if (offsets.empty() || ids.size() != ts.size() || offsets.back() != static_cast<int64_t>(ids.size()))
    throw DataError(r.path + ": inconsistent lsvcr store (history offsets)");
  std::vector<LsvcrHistory> hs(offsets.size() - 1);
  for (size_t u = 0; u + 1 < offsets.size(); ++u) {
    hs[u].ids.assign(ids.begin() + offsets[u], ids.begin() + offsets[u + 1]);
    hs[u].timestamps.assign(ts.begin() + offsets[u], ts.begin() + offsets[u + 1]);
  }
  return hs;
}

}  // namespace

void LsvcrStore::save(const std::string& path) const {
  std::string out(kMagic, sizeof kMagic);
  put_i64(out, kFormatVersion);
  put_i64(out, num_videos);
  put_i64(out, num_comments);
  put_vec(out, comment_video);
  put_vec(out, video_hot_comment);
  put_histories(out, video_histories);
  put_histories(out, comment_histories);
  write_file_atomic(path, out);
}

LsvcrStore LsvcrStore::load(const std::string& path) {
  const std::string buf = read_file(path);
  if (buf.size() < sizeof kMagic || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
    throw DataError(path + ": not an lsvcr store (bad magic; expected the lsvcr.bin of `seqrec prepare --format lsvcr`)");
  Reader r{buf, path, sizeof kMagic};
  const int64_t version = r.i64();
  if (version != kFormatVersion)
    throw DataError(path + ": lsvcr store format version " + std::to_string(version) + ", supported " +
                    std::to_string(kFormatVersion));
  LsvcrStore s;
  s.num_videos = r.i64();
  s.num_comments = r.i64();
  s.comment_video = r.vec();
  s.video_hot_comment = r.vec();
  s.video_histories = get_histories(r);
  s.comment_histories = get_histories(r);
  if (static_cast<int64_t>(s.comment_video.size()) != s.num_comments + 1 ||
      static_cast<int64_t>(s.video_hot_comment.size()) != s.num_videos + 1 ||
      s.video_histories.size() != s.comment_histories.size() || r.pos != buf.size())
    throw DataError(path + ": inconsistent lsvcr store (counts do not match the arrays)");
  s.video_comments.assign(s.num_videos + 1, {});
  for (int64_t c = 1; c <= s.num_comments; ++c) s.video_comments[s.comment_video[c]].push_back(c);
  return s;
}

namespace {
/// The kind of folder prepare_lsvcr writes, in its ownership marker.
constexpr const char* kLsvcrKind = "lsvcr-store";
}  // namespace

/// prepare_lsvcr's work, writing the store's files straight into `output_dir` (a temp folder).
LsvcrPrepareReport prepare_lsvcr_into(const std::string& input_dir, const std::string& output_dir);

LsvcrPrepareReport prepare_lsvcr(const std::string& input_dir, const std::string& output) {
  // As prepare: refuse a folder seqrec did not write before reading anything, build the store in a
  // temp folder beside it, mark it, swap it in.
  require_replaceable(output, kLsvcrKind, "prepare.output", "lsvcr prepare output");
  LsvcrPrepareReport report;
  write_owned_dir(output, kLsvcrKind, [&](const std::string& tmp) { report = prepare_lsvcr_into(input_dir, tmp); });
  return report;
}

LsvcrPrepareReport prepare_lsvcr_into(const std::string& input_dir, const std::string& output_dir) {
  IdSpace videos, comments;
  std::vector<std::string> titles{""}, texts{""};
  LsvcrStore s;
  s.comment_video.push_back(0);
  read_tsv(input_dir + "/videos.tsv", {"video_id", "title"}, [&](const std::string& loc, const auto& f) {
    videos.add(loc, f[0], "video");
    titles.push_back(tsv_safe(f[1]));
  });
  s.num_videos = static_cast<int64_t>(videos.raw.size()) - 1;
  s.video_hot_comment.assign(s.num_videos + 1, 0);
  read_tsv(input_dir + "/comments.tsv", {"comment_id", "video_id", "text"}, [&](const std::string& loc, const auto& f) {
    const int64_t v = videos.find(f[1]);
    if (v < 0) throw DataError(loc + ": comment '" + std::string(f[0]) + "' is on unknown video '" + std::string(f[1]) +
                               "' (not in videos.tsv)");
    const int64_t c = comments.add(loc, f[0], "comment");
    s.comment_video.push_back(v);
    if (s.video_hot_comment[v] == 0) s.video_hot_comment[v] = c;
    texts.push_back(tsv_safe(f[2]));
  });
  s.num_comments = static_cast<int64_t>(comments.raw.size()) - 1;
  std::unordered_map<std::string, int64_t> users;
  std::vector<std::string> user_raw;
  RawEvents video_events, comment_events;
  read_history(input_dir + "/video_history.tsv", "video_id", videos, "video", users, user_raw, video_events);
  read_history(input_dir + "/comment_history.tsv", "comment_id", comments, "comment", users, user_raw, comment_events);
  video_events.per_user.resize(user_raw.size());
  comment_events.per_user.resize(user_raw.size());
  LsvcrPrepareReport report;
  for (size_t u = 0; u < user_raw.size(); ++u) {
    s.video_histories.push_back(to_history(std::move(video_events.per_user[u])));
    s.comment_histories.push_back(to_history(std::move(comment_events.per_user[u])));
    report.num_video_events += static_cast<int64_t>(s.video_histories.back().ids.size());
    report.num_comment_events += static_cast<int64_t>(s.comment_histories.back().ids.size());
  }

  make_dirs(output_dir + "/videos");
  make_dirs(output_dir + "/comments");
  // users.tsv as every store has it: "index<TAB>raw id" lines, no header (UserMap reads it).
  std::string vt = "item_id\traw_id\ttitle\n", ct = "item_id\traw_id\ttext\tvideo\n", ut;
  for (int64_t v = 1; v <= s.num_videos; ++v) vt += std::to_string(v) + "\t" + videos.raw[v] + "\t" + titles[v] + "\n";
  for (int64_t c = 1; c <= s.num_comments; ++c)
    ct += std::to_string(c) + "\t" + comments.raw[c] + "\t" + texts[c] + "\t" + std::to_string(s.comment_video[c]) + "\n";
  for (size_t u = 0; u < user_raw.size(); ++u) ut += std::to_string(u) + "\t" + user_raw[u] + "\n";
  write_file_atomic(output_dir + "/videos/items.tsv", vt);
  write_file_atomic(output_dir + "/comments/items.tsv", ct);
  write_file_atomic(output_dir + "/users.tsv", ut);
  s.save(output_dir + "/" + kLsvcrStoreFile);
  report.num_users = static_cast<int64_t>(user_raw.size());
  report.num_videos = s.num_videos;
  report.num_comments = s.num_comments;
  return report;
}

// ---- split ----

namespace {

struct Session {
  int64_t begin = 0, end = 0;  // comment event range
};

std::vector<Session> sessions_of(const LsvcrStore& s, const LsvcrHistory& h) {
  std::vector<Session> out;
  for (int64_t i = 0; i < static_cast<int64_t>(h.ids.size()); ++i) {
    if (!out.empty() && s.comment_video[h.ids[i]] == s.comment_video[h.ids[out.back().end - 1]]) {
      out.back().end = i + 1;
    } else {
      out.push_back({i, i + 1});
    }
  }
  return out;
}

/// Number of timestamps < t (strict) or <= t.
int64_t count_before(const std::vector<int64_t>& ts, int64_t t, bool inclusive) {
  auto it = inclusive ? std::upper_bound(ts.begin(), ts.end(), t) : std::lower_bound(ts.begin(), ts.end(), t);
  return static_cast<int64_t>(it - ts.begin());
}

LsvcrSample video_sample(const LsvcrStore& s, int64_t user, int64_t i) {
  const auto& vh = s.video_histories[user];
  LsvcrSample x;
  x.user = user;
  x.video_end = i;
  x.comment_end = count_before(s.comment_histories[user].timestamps, vh.timestamps[i], /*inclusive=*/false);
  x.target_video = vh.ids[i];
  return x;
}

LsvcrSample session_sample(const LsvcrStore& s, int64_t user, const Session& session) {
  const auto& ch = s.comment_histories[user];
  LsvcrSample x;
  x.user = user;
  x.comment_end = session.begin;
  x.video_end = count_before(s.video_histories[user].timestamps, ch.timestamps[session.begin], /*inclusive=*/true);
  x.target_video = s.comment_video[ch.ids[session.begin]];
  for (int64_t i = session.begin; i < session.end; ++i)
    if (std::find(x.positive_comments.begin(), x.positive_comments.end(), ch.ids[i]) == x.positive_comments.end())
      x.positive_comments.push_back(ch.ids[i]);
  return x;
}

}  // namespace

LsvcrSplits split_lsvcr(const LsvcrStore& s) {
  LsvcrSplits out;
  for (int64_t u = 0; u < s.num_users(); ++u) {
    const auto& vh = s.video_histories[u];
    const auto& ch = s.comment_histories[u];
    const int64_t nv = static_cast<int64_t>(vh.ids.size());
    const std::vector<Session> sessions = sessions_of(s, ch);
    const int64_t ns = static_cast<int64_t>(sessions.size());
    int64_t cut = INT64_MAX;  // the first held-out event's time
    if (nv >= 3) {
      out.valid.video.push_back(video_sample(s, u, nv - 2));
      out.test.video.push_back(video_sample(s, u, nv - 1));
      cut = std::min(cut, vh.timestamps[nv - 2]);
    }
    if (ns >= 3) {
      out.valid.comment.push_back(session_sample(s, u, sessions[ns - 2]));
      out.test.comment.push_back(session_sample(s, u, sessions[ns - 1]));
      cut = std::min(cut, ch.timestamps[sessions[ns - 2].begin]);
    }
    for (int64_t i = 0; i < nv - (nv >= 3 ? 2 : 0); ++i) {
      if (vh.timestamps[i] >= cut) break;
      LsvcrSample x = video_sample(s, u, i);
      if (x.video_end + x.comment_end > 0) out.train.video.push_back(std::move(x));
    }
    for (int64_t k = 0; k < ns - (ns >= 3 ? 2 : 0); ++k) {
      if (ch.timestamps[sessions[k].begin] >= cut) break;
      // A training session must end before the cut too: its comments are inputs of later samples.
      if (ch.timestamps[sessions[k].end - 1] >= cut) break;
      LsvcrSample x = session_sample(s, u, sessions[k]);
      if (x.video_end + x.comment_end > 0) out.train.comment.push_back(std::move(x));
    }
  }
  return out;
}

}  // namespace seqrec::data
