// libFuzzer target: prepare's item side tables (a CSV/TSV table with a header, ML-1M movies.dat)
// and the items.tsv that prepare writes from them. The first input byte picks the format, the
// separator and skip_bad_rows; the rest is the item file. A fixed interactions file names items
// "1".."6". A table prepare accepts must give an items.tsv that ItemCatalog reads back with the
// store's item count; anything else than a seqrec::Error on the way is a finding.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/prepare.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using seqrec::data::ItemFormat;
  if (size < 1) return 0;
  const std::string& dir = seqrec::fuzz::scratch_dir();
  static const bool interactions = [&] {
    const std::string csv =
        "user_id,item_id,timestamp\nu1,1,10\nu1,2,20\nu1,3,30\nu2,4,10\nu2,5,20\nu2,1,30\nu3,6,5\nu3,2,6\nu3,3,7\n";
    seqrec::fuzz::write_bytes(dir + "/interactions.csv", csv.data(), csv.size());
    return true;
  }();
  (void)interactions;
  const uint8_t selector = data[0];
  static const char* const kSeps[] = {"\t", ",", ";", "|"};
  seqrec::data::PrepareOptions o;
  o.input = dir + "/interactions.csv";
  o.items = dir + (selector % 3 == 2 ? "/movies.dat" : "/items.txt");
  o.items_format = selector % 3 == 2 ? ItemFormat::kMovieLensDat : ItemFormat::kTable;
  o.items_sep = kSeps[(selector >> 2) % 4];
  o.item_id_col = (selector & 0x10) != 0 ? "id" : "item_id";
  o.skip_bad_rows = (selector & 0x20) != 0;
  o.threads = 1;
  o.output = dir + "/out";
  seqrec::fuzz::write_bytes(o.items, data + 1, size - 1);
  const bool prepared = seqrec::fuzz::expect_ok_or_error([&] {
    const seqrec::data::PrepareReport report = seqrec::data::prepare(o);
    if (report.num_items != 6)
      seqrec::fuzz::finding("6 items in the interactions, " + std::to_string(report.num_items) + " prepared");
  });
  if (!prepared) return 0;
  try {
    const seqrec::data::ItemCatalog catalog = seqrec::data::ItemCatalog::load(o.output);
    if (catalog.num_items() != 6)
      seqrec::fuzz::finding("items.tsv holds " + std::to_string(catalog.num_items()) + " items, not 6");
    for (int64_t id = 1; id <= 6; ++id) {
      if (catalog.find(catalog.raw_id(id)) != id)
        seqrec::fuzz::finding("raw id of item " + std::to_string(id) + " does not map back");
      for (const std::string& c : catalog.columns()) (void)catalog.field(id, c);
    }
  } catch (const seqrec::Error& e) {
    seqrec::fuzz::finding(std::string("prepare wrote an items.tsv that ItemCatalog refuses: ") + e.what());
  }
  return 0;
}
