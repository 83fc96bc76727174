// Tests of the interaction store: round trip and every verification step of open().
#include "seqrec/data/interaction_store.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/hash.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "support.h"

namespace seqrec::data {
namespace {

using seqrec::testing::TempDir;

/// Three users (one empty), odd event count: version 2 pads the item block so the timestamps are
/// 8-aligned (version 1 left them misaligned).
StoreData sample(bool with_ts) {
  StoreData d;
  d.num_items = 5;
  d.has_timestamps = with_ts;
  d.user_offsets = {0, 3, 3, 5};
  d.item_ids = {1, 5, 2, 4, 3};
  if (with_ts) d.timestamps = {10, 20, 20, 7, 9};
  return d;
}

void expect_equal(const InteractionStore& s, const StoreData& d) {
  ASSERT_EQ(s.num_users(), static_cast<int64_t>(d.user_offsets.size()) - 1);
  ASSERT_EQ(s.num_items(), d.num_items);
  ASSERT_EQ(s.num_events(), static_cast<int64_t>(d.item_ids.size()));
  ASSERT_EQ(s.has_timestamps(), d.has_timestamps);
  for (int64_t u = 0; u < s.num_users(); ++u) {
    const auto items = s.items(u);
    const std::vector<int32_t> got(items.begin(), items.end());
    const std::vector<int32_t> want(d.item_ids.begin() + d.user_offsets[u],
                                    d.item_ids.begin() + d.user_offsets[u + 1]);
    EXPECT_EQ(got, want) << "user " << u;
    const auto ts = s.timestamps(u);
    if (d.has_timestamps) {
      const std::vector<int64_t> got_ts(ts.begin(), ts.end());
      const std::vector<int64_t> want_ts(d.timestamps.begin() + d.user_offsets[u],
                                         d.timestamps.begin() + d.user_offsets[u + 1]);
      EXPECT_EQ(got_ts, want_ts) << "user " << u;
    } else {
      EXPECT_TRUE(ts.empty());
    }
  }
}

std::string write_sample(const TempDir& dir, bool with_ts) {
  const std::string path = dir.file("store.bin");
  write_store(sample(with_ts), path);
  return path;
}

TEST(InteractionStore, RoundTripWithTimestamps) {
  TempDir dir;
  const std::string path = write_sample(dir, true);
  const auto s = InteractionStore::open(path);
  expect_equal(s, sample(true));
  EXPECT_EQ(s.path(), path);
  // Header, 4 offsets, 5 items, 4 bytes of padding, 5 timestamps.
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 8u * 4u + 4u * 5u + 4u + 8u * 5u);
  // No temp file is left next to the store.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++files;
  EXPECT_EQ(files, 1);
}

TEST(InteractionStore, RoundTripWithoutTimestamps) {
  TempDir dir;
  const auto s = InteractionStore::open(write_sample(dir, false));
  expect_equal(s, sample(false));
  EXPECT_TRUE(s.items(1).empty());
}

TEST(InteractionStore, CopiesShareTheMapping) {
  TempDir dir;
  InteractionStore copy;
  {
    const auto s = InteractionStore::open(write_sample(dir, true));
    copy = s;
  }
  expect_equal(copy, sample(true));
}

TEST(InteractionStore, FromDataKeepsVectors) {
  const auto s = InteractionStore::from_data(sample(true));
  expect_equal(s, sample(true));
  EXPECT_EQ(s.path(), "");
}

TEST(InteractionStore, TruncatedFile) {
  TempDir dir;
  const std::string path = write_sample(dir, true);
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 3);
  ASSERT_THROWS_WITH(InteractionStore::open(path),
                     "truncated: expected " + std::to_string(size) + " bytes, got " +
                         std::to_string(size - 3));
  std::filesystem::resize_file(path, 10);
  ASSERT_THROWS_WITH(InteractionStore::open(path), "truncated");
}

TEST(InteractionStore, TrailingBytes) {
  TempDir dir;
  const std::string path = write_sample(dir, true);
  append_line(path, "x");
  ASSERT_THROWS_WITH(InteractionStore::open(path), "size mismatch");
}

TEST(InteractionStore, BadMagic) {
  TempDir dir;
  const std::string path = dir.write("junk.bin", std::string(200, 'x'));
  ASSERT_THROWS_WITH(InteractionStore::open(path), "not a seqrec interaction store (bad magic)");
  ASSERT_THROWS_WITH(InteractionStore::open(path), path);
}

void flip_byte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x5a));
}

TEST(InteractionStore, BadVersion) {
  TempDir dir;
  const std::string path = write_sample(dir, false);
  flip_byte(path, 8);
  ASSERT_THROWS_WITH(InteractionStore::open(path), "version");
}

TEST(InteractionStore, CorruptedPayload) {
  TempDir dir;
  const std::string path = write_sample(dir, true);
  flip_byte(path, 64 + 8 * 4 + 2);  // inside the item ids
  ASSERT_THROWS_WITH(InteractionStore::open(path), "checksum mismatch (file corrupted)");
}

/// A version 1 file (no padding, FNV-1a over the whole payload) written by hand, as older
/// prepare runs left them.
TEST(InteractionStore, ReadsVersion1Files) {
  TempDir dir;
  const StoreData d = sample(true);
  std::string payload;
  auto add = [&](const void* p, size_t n) { payload.append(static_cast<const char*>(p), n); };
  add(d.user_offsets.data(), d.user_offsets.size() * 8);
  add(d.item_ids.data(), d.item_ids.size() * 4);
  add(d.timestamps.data(), d.timestamps.size() * 8);
  StoreHeader h{};
  std::memcpy(h.magic, kStoreMagic, 8);
  h.version = 1;
  h.flags = 1;
  h.num_users = 3;
  h.num_items = 5;
  h.num_events = 5;
  h.checksum = fnv1a(kFnvOffset, payload.data(), payload.size());
  const std::string path = dir.file("v1.bin");
  write_file_atomic(path, std::string(reinterpret_cast<const char*>(&h), sizeof h) + payload);
  expect_equal(InteractionStore::open(path), d);
  flip_byte(path, 64 + 8 * 4 + 4 * 5 + 3);  // inside the (misaligned) timestamps
  ASSERT_THROWS_WITH(InteractionStore::open(path), "checksum mismatch");
}

/// The streaming writer gives the same file as write_store, block by block.
TEST(InteractionStore, StreamingWriterMatchesWriteStore) {
  TempDir dir;
  const StoreData d = sample(true);
  const std::string whole = write_sample(dir, true);
  const std::string streamed = dir.file("streamed.bin");
  {
    StoreWriter w(streamed, 3, 5, 5, true);
    w.write_offsets(d.user_offsets.data());
    w.write_events(d.item_ids.data(), d.timestamps.data(), 2);
    w.write_events(d.item_ids.data() + 2, d.timestamps.data() + 2, 3);
    w.commit();
  }
  EXPECT_EQ(read_file(streamed), read_file(whole));
  // Uncommitted: nothing is left behind, and missing events are refused.
  {
    StoreWriter w(dir.file("partial.bin"), 3, 5, 5, true);
    w.write_offsets(d.user_offsets.data());
    ASSERT_THROWS_WITH(w.commit(), "expected 5 events and the offsets, got 0 events");
    const std::vector<int32_t> bad = {6};
    const std::vector<int64_t> t = {1};
    ASSERT_THROWS_WITH(w.write_events(bad.data(), t.data(), 1), "expected 1..5, got 6");
  }
  EXPECT_FALSE(path_exists(dir.file("partial.bin")));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++files;
  EXPECT_EQ(files, 2);
}

TEST(InteractionStore, MissingFile) {
  TempDir dir;
  ASSERT_THROWS_WITH(InteractionStore::open(dir.file("nope.bin")), "nope.bin");
}

TEST(InteractionStore, FromDataValidates) {
  StoreData d = sample(false);
  d.item_ids[1] = 6;  // V is 5
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "expected 1..5, got 6");
  d.item_ids[1] = 0;  // padding is never stored
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "got 0");

  d = sample(false);
  d.user_offsets = {0, 3, 2, 5};
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "monotone");
  d.user_offsets = {0, 3, 3, 4};
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "expected last offset 5, got 4");

  d = sample(true);
  d.timestamps.pop_back();
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "expected 5 timestamps, got 4");
  d = sample(true);
  d.timestamps = {10, 5, 20, 7, 9};
  ASSERT_THROWS_WITH(InteractionStore::from_data(d), "time order");
}

TEST(InteractionStore, WriteRefusesInvalidData) {
  TempDir dir;
  StoreData d = sample(false);
  d.item_ids[0] = 9;
  ASSERT_THROWS_WITH(write_store(d, dir.file("bad.bin")), "out of range");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.bin")));
}

TEST(InteractionStore, UserIndexOutOfRange) {
  const auto s = InteractionStore::from_data(sample(false));
  EXPECT_THROW(s.items(3), std::out_of_range);
  EXPECT_THROW(s.items(-1), std::out_of_range);
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

TEST(WindowRowsTest, SlicesEveryRowLikePython) {
  StoreData d;
  d.num_items = 9;
  d.has_timestamps = true;
  d.user_offsets = {0, 6, 8, 8};  // rows of 6, 2 and 0 events
  d.item_ids = {1, 2, 3, 4, 5, 6, 7, 8};
  d.timestamps = {10, 20, 30, 40, 50, 60, 70, 80};
  const InteractionStore store = InteractionStore::from_data(d);
  auto row = [](const InteractionStore& s, int64_t u) { return std::vector<int32_t>(s.items(u).begin(), s.items(u).end()); };
  InteractionStore cut = window_rows(store, -5, -2);  // seq[-5:-2]
  EXPECT_EQ(row(cut, 0), (std::vector<int32_t>{2, 3, 4}));
  EXPECT_EQ(std::vector<int64_t>(cut.timestamps(0).begin(), cut.timestamps(0).end()), (std::vector<int64_t>{20, 30, 40}));
  EXPECT_EQ(row(cut, 1), (std::vector<int32_t>{}));   // [7, 8][-5:-2] is empty
  EXPECT_EQ(cut.num_users(), 3);
  EXPECT_EQ(row(window_rows(store, 1, 0), 1), (std::vector<int32_t>{8}));  // end 0: to the end
  EXPECT_EQ(row(window_rows(store, 0, 4), 0), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(window_rows(store, 0, 4).num_items(), 9);
}

TEST(WindowRowsTest, AnEmptyWindowIsAConfigError) {
  auto node = config::ConfigNode::parse("item_start_position: -720\nitem_end_position: -2000\n");
  ASSERT_THROWS_WITH(config::read_data_options(node), "item_end_position: must come after item_start_position (-720)");
  auto ok = config::ConfigNode::parse("item_start_position: -2000\nitem_end_position: -720\n");
  EXPECT_EQ(config::read_data_options(ok).item_end_position, -720);
}

TEST(WindowRowsTest, TrainFeatMaxLengthBelowOneWindowIsAConfigError) {
  ASSERT_THROWS_WITH(config::read_data_options(config::ConfigNode::parse("max_seq_len: 50\ntrain_feat_max_length: 50\n")),
                     "train_feat_max_length: must be 0 (off) or at least max_seq_len + 1 = 51");
  EXPECT_EQ(config::read_data_options(config::ConfigNode::parse("max_seq_len: 50\ntrain_feat_max_length: 51\n"))
                .train_feat_max_length, 51);
  EXPECT_EQ(config::read_data_options(config::ConfigNode::parse("max_seq_len: 50\n")).train_feat_max_length, 0);
}

/// A window length beyond 2^20 is refused by name before anything is sized by it (4e9 used to end
/// in LibTorch's "can't allocate 1024000000000 bytes" with a backtrace).
TEST(DataOptionsTest, MaxSeqLenOutOfRangeIsAConfigError) {
  ASSERT_THROWS_WITH(config::read_data_options(config::ConfigNode::parse("max_seq_len: 4000000000\n")),
                     "max_seq_len: must be at most 1048576 (2^20), got 4000000000");
  ASSERT_THROWS_WITH(config::read_data_options(config::ConfigNode::parse("max_seq_len: -5\n")), "max_seq_len");
  EXPECT_EQ(config::read_data_options(config::ConfigNode::parse("max_seq_len: 1048576\n")).max_seq_len, 1048576);
}

}  // namespace
}  // namespace seqrec::data
