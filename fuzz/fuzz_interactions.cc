// libFuzzer target: prepare's interaction readers (CSV/TSV with a header, ML-1M ratings.dat,
// ML-20M ratings.csv, SASRec "user item" pairs, per-user sequences). The first input byte picks the
// format, the separator and skip_bad_rows; the rest is the file's text, parsed in memory by
// parse_events() (the code path of read_events() after the block reader). DataError / ConfigError
// are expected; anything else is a finding.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "seqrec/data/prepare.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using seqrec::data::InputFormat;
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  static const InputFormat kFormats[] = {InputFormat::kCsv,         InputFormat::kMovieLensDat,
                                         InputFormat::kMovieLensCsv, InputFormat::kSasrecPairs,
                                         InputFormat::kUserSequences, InputFormat::kCsv};
  static const char* const kSeps[] = {",", "\t", "::", ";"};
  seqrec::data::PrepareOptions o;
  o.input = "fuzz.txt";
  o.format = kFormats[selector % 6];
  o.sep = kSeps[(selector >> 3) % 4];
  if (selector % 6 == 5) o.time_col = "";  // CSV without a timestamp column
  o.skip_bad_rows = (selector & 0x20) != 0;
  o.threads = (selector & 0x40) != 0 ? 2 : 1;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  seqrec::fuzz::expect_ok_or_error([&] {
    seqrec::data::PrepareReport report;
    const auto events = seqrec::data::parse_events(text, o, &report);
    if (!events.empty() && report.rows_read == 0) seqrec::fuzz::finding("events from no row read");
    for (const auto& e : events) {
      if (e.user.empty() || e.item.empty()) seqrec::fuzz::finding("an event with an empty id");
    }
  });
  return 0;
}
