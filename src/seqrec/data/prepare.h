// prepare: raw interaction files -> filters -> dense ids -> InteractionStore + id maps + item table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace seqrec::data {

/// Input layouts understood by prepare.
enum class InputFormat {
  kCsv,            ///< header row; columns named by user_col/item_col/time_col; separator `sep`
  kParquet,        ///< Parquet columns named by user_col/item_col/time_col: integer or string ids,
                   ///< integer timestamps (TIMESTAMP columns in their stored unit); the item (and
                   ///< timestamp) column may be a list (one row per user, PerSRec's layout)
  kMovieLensDat,   ///< ML-1M ratings.dat: user::item::rating::timestamp, no header
  kMovieLensCsv,   ///< ML-20M ratings.csv: header userId,movieId,rating,timestamp
  kSasrecPairs,    ///< "user item" per line, in time order (no timestamps)
  kUserSequences,  ///< "user item1 item2 ..." or "user<TAB>item item ..." per line (no timestamps);
                   ///< a first line whose second field is not an integer is a header and skipped
};

/// Parses "csv", "parquet", "movielens_dat", "movielens_csv", "sasrec_pairs", "user_sequences"; throws ConfigError(path).
InputFormat parse_input_format(const std::string& name, const std::string& path);

/// Item side-table layouts.
enum class ItemFormat {
  kNone,           ///< no item table
  kTable,          ///< CSV/TSV with a header; id column item_id_col, text columns kept by name
  kMovieLensDat,   ///< ML-1M movies.dat: MovieID::Title::Genres (ISO-8859-1 -> UTF-8); columns title, genres
  kParquet,        ///< Parquet: id column item_id_col; every other flat column kept as text
};

/// Parses "none", "table", "movielens_dat", "parquet"; throws ConfigError(path).
ItemFormat parse_item_format(const std::string& name, const std::string& path);

/// Everything `seqrec prepare` needs (the `prepare:` config section).
struct PrepareOptions {
  std::string input;                  ///< interactions file
  InputFormat format = InputFormat::kCsv;
  std::string sep = ",";              ///< kCsv separator ("\t" allowed)
  std::string user_col = "user_id";   ///< kCsv column names (HLLM: item_id,user_id,timestamp)
  std::string item_col = "item_id";
  std::string time_col = "timestamp"; ///< "" = no timestamp column
  std::string items;                  ///< optional item table file
  ItemFormat items_format = ItemFormat::kNone;
  std::string items_sep = "\t";       ///< kTable separator
  std::string item_id_col = "item_id";///< kTable id column
  int64_t min_user_interactions = 0;  ///< drop users with fewer (after item filter)
  int64_t min_item_interactions = 0;  ///< drop items with fewer (counted on raw data)
  bool kcore = false;                 ///< repeat both filters until stable (k-core)
  bool skip_bad_rows = false;         ///< skip malformed rows (counted) instead of failing
  std::string output;                 ///< output directory
  int64_t threads = 0;                ///< parsing / counting threads (0 = all cores); outputs do
                                      ///< not depend on it
  int64_t memory_limit_mb = 0;        ///< 0 = no limit; else parsed events beyond a third of it
                                      ///< spill to disk and the store is built in user buckets of
                                      ///< at most a third of it (id tables come on top)
  /// Optional: called with the store's temp folder once its files are written (items.tsv
  /// included) and before the ownership marker, to write more files of the store there (e.g.
  /// item_tokens.bin); they are listed in the marker and swapped in with the rest.
  std::function<void(const std::string& dir)> finish;
};

/// What prepare did (also written to <output>/meta.json).
struct PrepareReport {
  int64_t rows_read = 0;              ///< data rows parsed
  int64_t rows_skipped = 0;           ///< malformed rows skipped (skip_bad_rows)
  int64_t num_users = 0;              ///< after filtering
  int64_t num_items = 0;
  int64_t num_events = 0;
  bool has_timestamps = false;
  int64_t items_with_text = 0;        ///< items matched in the item table
};

/// Runs the whole pipeline. Output directory layout:
///   interactions.bin  (InteractionStore)
///   users.tsv         dense_user_index<TAB>raw_user_id   (one line per user, index 0..U-1)
///   items.tsv         header "item_id<TAB>raw_id<TAB><text columns...>", then rows for 1..V
///   meta.json         counts, options, has_timestamps, rows_skipped
/// Everything is written under a temp dir and renamed into place; a failure leaves nothing behind
/// (an existing output dir is replaced only on success). The input is parsed in parallel blocks and
/// streamed: memory is about 16 bytes per event (or a spill file) plus the id tables.
/// Errors: DataError "file:line: expected ..., got ..." for malformed rows; DataError for empty result.
PrepareReport prepare(const PrepareOptions& options);

/// Raw interaction as parsed from a file (before filtering and id mapping).
struct RawEvent {
  std::string user;     ///< raw user id
  std::string item;     ///< raw item id
  int64_t timestamp;    ///< 0 when the format has none
  int64_t order;        ///< row order, for the stable sort
};

/// Reads raw events from options.input in options.format (exposed for tests).
std::vector<RawEvent> read_events(const PrepareOptions& options, PrepareReport* report);

/// Parses `text` as the whole contents of options.input (named in errors) in a text format, as
/// read_events does, without touching the file system (exposed for tests and the fuzz targets).
/// Throws ConfigError for kParquet.
std::vector<RawEvent> parse_events(std::string_view text, const PrepareOptions& options, PrepareReport* report);

/// Applies the min-count / k-core filters to events (exposed for tests). Returns the kept events.
std::vector<RawEvent> filter_events(std::vector<RawEvent> events, const PrepareOptions& options);

}  // namespace seqrec::data
