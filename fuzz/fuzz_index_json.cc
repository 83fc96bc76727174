// libFuzzer target: LC-Rec's index.json reader (read_index_json). The input is the file. A file it
// accepts must hold 1..5 levels, codes >= 0, and survive write_index_json -> read_index_json with
// the same codes; anything else than a seqrec::Error is a finding.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "seqrec/semantic_id/item_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace sid = seqrec::semantic_id;
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  sid::ItemIndex index;
  if (!seqrec::fuzz::expect_ok_or_error([&] { index = sid::read_index_json(path); })) return 0;
  if (index.num_levels < 1 || index.num_levels > sid::kMaxLevels)
    seqrec::fuzz::finding("accepted " + std::to_string(index.num_levels) + " levels");
  if (index.codes.size() % static_cast<size_t>(index.num_levels) != 0) seqrec::fuzz::finding("ragged codes");
  for (int64_t c : index.codes)
    if (c < 0) seqrec::fuzz::finding("negative code " + std::to_string(c));
  const std::string again = seqrec::fuzz::scratch_dir() + "/index.json";
  try {
    sid::write_index_json(again, index);
    const sid::ItemIndex back = sid::read_index_json(again, index.num_items());
    if (back.num_levels != index.num_levels || back.codes != index.codes)
      seqrec::fuzz::finding("write_index_json -> read_index_json changed the codes");
  } catch (const seqrec::Error& e) {
    seqrec::fuzz::finding(std::string("an index it read, once written, is refused: ") + e.what());
  }
  return 0;
}
