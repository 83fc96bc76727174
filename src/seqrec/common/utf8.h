// UTF-8 in one place for the tokenizers, the config reader and the item-text cleaner: encoding of a
// code point, the length of one character, validity and lossy repair (utf8.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace seqrec {

/// Appends the UTF-8 bytes of code point `cp` (at most U+10FFFF; not validated) to `out`.
inline void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Length of the valid UTF-8 character at p[0..n) (1..4; n >= 1), or 0 if the bytes there are
/// malformed (stray continuation byte, truncated sequence, overlong form, surrogate, past U+10FFFF);
/// `*subpart` is then the length of the maximal invalid subpart (>= 1), which one U+FFFD replaces
/// as Rust's from_utf8_lossy and Python's decode(errors="replace") do.
int utf8_char(const unsigned char* p, size_t n, int* subpart = nullptr);

/// The code point of the valid character of `len` bytes at p (utf8_char's length).
uint32_t utf8_decode(const unsigned char* p, int len);

/// Length of the longest prefix of `s` that is valid UTF-8 (s.size() when all of it is).
size_t utf8_valid_prefix(std::string_view s);

/// Whether all of `s` is valid UTF-8.
inline bool is_valid_utf8(std::string_view s) { return utf8_valid_prefix(s) == s.size(); }

/// `s` with each maximal invalid subpart replaced by U+FFFD (from_utf8_lossy semantics).
std::string to_valid_utf8(std::string_view s);

}  // namespace seqrec
