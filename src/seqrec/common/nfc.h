// Unicode canonical composition (NFC), for the tokenizers' normalizers; torch-free.
#pragma once

#include <string>
#include <string_view>

namespace seqrec {

/// The canonical composition (NFC) of UTF-8 `text` (Unicode 14.0 tables); invalid UTF-8 bytes are
/// passed through as is.
std::string nfc_normalize(const std::string& text);

/// True when `s` is certainly NFC already (valid UTF-8 without a character that composition could
/// change): the fast path that skips nfc_normalize.
bool nfc_quick_yes(std::string_view s);

}  // namespace seqrec
