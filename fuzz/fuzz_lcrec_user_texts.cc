// libFuzzer target: LC-Rec's user.json reader (read_lcrec_user_texts). The input is the file; raw
// user and item ids "0".."99" are known (dense id = the number + 1), all others unknown. What it
// accepts must name known users and items only, keep each list sorted by user, and give every
// preference at least one text; anything else than a seqrec::Error is a finding.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "seqrec/data/lcrec_user_texts.h"

namespace {

int64_t known(const std::string& raw) {
  if (raw.empty() || raw.size() > 2) return -1;
  for (char c : raw)
    if (c < '0' || c > '9') return -1;
  if (raw.size() == 2 && raw[0] == '0') return -1;
  return std::stoll(raw) + 1;
}

void check_intentions(const std::vector<seqrec::data::UserIntention>& list) {
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& x = list[i];
    if (x.user < 1 || x.user > 100 || x.item < 1 || x.item > 100) seqrec::fuzz::finding("unknown id accepted");
    for (int32_t h : x.history)
      if (h < 1 || h > 100) seqrec::fuzz::finding("unknown history item accepted");
    if (i > 0 && list[i - 1].user > x.user) seqrec::fuzz::finding("intentions not sorted by user");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    const seqrec::data::LcRecUserTexts t = seqrec::data::read_lcrec_user_texts(path, known, known);
    for (size_t i = 0; i < t.preferences.size(); ++i) {
      const auto& p = t.preferences[i];
      if (p.user < 1 || p.user > 100) seqrec::fuzz::finding("unknown user accepted");
      if (p.texts.empty()) seqrec::fuzz::finding("a preference without text");
      if (i > 0 && t.preferences[i - 1].user > p.user) seqrec::fuzz::finding("preferences not sorted by user");
    }
    check_intentions(t.train_intentions);
    check_intentions(t.test_intentions);
  });
  return 0;
}
