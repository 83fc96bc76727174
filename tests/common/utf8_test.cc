#include "seqrec/common/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace seqrec {
namespace {

TEST(Utf8Test, ValidPrefixStopsAtTheFirstInvalidSequence) {
  EXPECT_EQ(utf8_valid_prefix(""), 0u);
  EXPECT_EQ(utf8_valid_prefix("plain ascii"), 11u);
  const std::string good = "caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF";  // é 日 😀 U+10FFFF
  EXPECT_EQ(utf8_valid_prefix(good), good.size());
  EXPECT_EQ(utf8_valid_prefix("ab\x80"), 2u);               // stray continuation byte
  EXPECT_EQ(utf8_valid_prefix("ab\xC3"), 2u);               // truncated
  EXPECT_EQ(utf8_valid_prefix("a\xC3(b"), 1u);              // bad continuation
  EXPECT_EQ(utf8_valid_prefix("a\xC0\xAF"), 1u);            // overlong '/'
  EXPECT_EQ(utf8_valid_prefix("a\xE0\x80\xAF"), 1u);        // overlong, 3 bytes
  EXPECT_EQ(utf8_valid_prefix("a\xF0\x80\x80\xAF"), 1u);    // overlong, 4 bytes
  EXPECT_EQ(utf8_valid_prefix("a\xED\xA0\x80"), 1u);        // surrogate U+D800
  EXPECT_EQ(utf8_valid_prefix("a\xF4\x90\x80\x80"), 1u);    // U+110000
  EXPECT_EQ(utf8_valid_prefix("a\xF5\x80\x80\x80"), 1u);    // lead byte past F4
  EXPECT_EQ(utf8_valid_prefix("a\xE6\x97"), 1u);            // truncated at the end
  EXPECT_EQ(utf8_valid_prefix("\xE6\x97\xA5\xFF"), 3u);
}

TEST(Utf8Test, AppendRoundTripsThroughTheValidator) {
  for (uint32_t cp : {0x41u, 0x7FFu, 0x800u, 0xFFFDu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    utf8_append(s, cp);
    EXPECT_EQ(utf8_valid_prefix(s), s.size()) << cp;
  }
}

TEST(Utf8Test, CharLengthsAndMaximalInvalidSubparts) {
  auto len = [](const std::string& s, int* sub) {
    return utf8_char(reinterpret_cast<const unsigned char*>(s.data()), s.size(), sub);
  };
  int sub = -1;
  EXPECT_EQ(len("a", &sub), 1);
  EXPECT_EQ(len("\xC3\xA9x", &sub), 2);
  EXPECT_EQ(len("\xF0\x9F\x98\x80", &sub), 4);
  EXPECT_EQ(len("\xE6\x97", &sub), 0);  // truncated: the two bytes are one invalid subpart
  EXPECT_EQ(sub, 2);
  EXPECT_EQ(len("\xE0\x80", &sub), 0);  // E0 needs A0..BF next: the subpart is E0 alone
  EXPECT_EQ(sub, 1);
  EXPECT_EQ(len("\xFF", &sub), 0);
  EXPECT_EQ(sub, 1);
  EXPECT_EQ(utf8_decode(reinterpret_cast<const unsigned char*>("\xE6\x97\xA5"), 3), 0x65E5u);
  EXPECT_EQ(utf8_decode(reinterpret_cast<const unsigned char*>("\xF4\x8F\xBF\xBF"), 4), 0x10FFFFu);
}

TEST(Utf8Test, LossyRepairReplacesEachMaximalInvalidSubpartOnce) {
  // Python: b"a\xe6\x97b\xe0\x80c\xff".decode("utf-8", "replace") == "a\ufffdb\ufffd\ufffdc\ufffd"
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(to_valid_utf8("a\xE6\x97" "b\xE0\x80" "c\xFF"), "a" + fffd + "b" + fffd + fffd + "c" + fffd);
  EXPECT_EQ(to_valid_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9"));
  EXPECT_FALSE(is_valid_utf8("caf\xC3"));
}

}  // namespace
}  // namespace seqrec
