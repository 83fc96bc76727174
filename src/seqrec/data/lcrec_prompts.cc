// LC-Rec prompt rendering: task names, placeholders, str.format, the Alpaca wrapper, title cleaning.
// The template table itself is generated into lcrec_templates.cc.
#include "seqrec/data/lcrec_prompts.h"

#include <cctype>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "seqrec/common/error.h"

namespace seqrec::data {
namespace {

struct FieldName {
  std::string_view name;
  PromptField bit;
  std::string PromptValues::*value;
};

constexpr FieldName kFieldNames[] = {
    {"item", kFieldItem, &PromptValues::item},
    {"inters", kFieldInters, &PromptValues::inters},
    {"title", kFieldTitle, &PromptValues::title},
    {"description", kFieldDescription, &PromptValues::description},
    {"inter_titles", kFieldInterTitles, &PromptValues::inter_titles},
    {"explicit_preference", kFieldExplicitPreference, &PromptValues::explicit_preference},
    {"user_related_intention", kFieldUserRelatedIntention, &PromptValues::user_related_intention},
    {"item_related_intention", kFieldItemRelatedIntention, &PromptValues::item_related_intention},
    {"query", kFieldQuery, &PromptValues::query},
};

const FieldName& field_named(std::string_view name, const char* text) {
  for (const FieldName& f : kFieldNames)
    if (f.name == name) return f;
  throw std::invalid_argument("lcrec template: unknown placeholder {" + std::string(name) + "} in \"" + text + "\"");
}

/// Walks `text` as str.format does, calling literal(piece) and field(name) in order.
template <typename Literal, typename Field>
void scan_template(const char* text, Literal literal, Field field) {
  const std::string_view s(text);
  size_t i = 0;
  while (i < s.size()) {
    const size_t k = s.find_first_of("{}", i);
    if (k == std::string_view::npos) {
      literal(s.substr(i));
      return;
    }
    literal(s.substr(i, k - i));
    if (k + 1 < s.size() && s[k + 1] == s[k]) {  // "{{" or "}}"
      literal(s.substr(k, 1));
      i = k + 2;
      continue;
    }
    if (s[k] == '}') throw std::invalid_argument(std::string("lcrec template: single '}' in \"") + text + "\"");
    const size_t close = s.find('}', k + 1);
    if (close == std::string_view::npos)
      throw std::invalid_argument(std::string("lcrec template: unclosed '{' in \"") + text + "\"");
    field(s.substr(k + 1, close - k - 1));
    i = close + 1;
  }
}

/// Length of the Python-whitespace code point at s[i] (0 if none). str.strip() removes what
/// str.isspace() accepts: ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680, U+2000-U+200A,
/// U+2028, U+2029, U+202F, U+205F, U+3000.
size_t space_at(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned c = b(i);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && (b(i + 1) == 0x85 || b(i + 1) == 0xa0)) return 2;
  if (c == 0xe1 && b(i + 1) == 0x9a && b(i + 2) == 0x80) return 3;  // U+1680
  if (c == 0xe2 && b(i + 1) == 0x80) {
    const unsigned d = b(i + 2);
    if ((d >= 0x80 && d <= 0x8a) || d == 0xa8 || d == 0xa9 || d == 0xaf) return 3;  // U+2000-200A, 2028, 2029, 202F
  }
  if (c == 0xe2 && b(i + 1) == 0x81 && b(i + 2) == 0x9f) return 3;  // U+205F
  if (c == 0xe3 && b(i + 1) == 0x80 && b(i + 2) == 0x80) return 3;  // U+3000
  return 0;
}

/// Length of the Python-whitespace code point that ends at s[end-1] (0 if none).
size_t space_before(std::string_view s, size_t end) {
  for (size_t len = 1; len <= 3 && len <= end; ++len)
    if (space_at(s, end - len) == len) return len;
  return 0;
}

}  // namespace

const char* lcrec_task_name(LcRecTask task) {
  switch (task) {
    case LcRecTask::kSeqRec: return "seqrec";
    case LcRecTask::kItem2Index: return "item2index";
    case LcRecTask::kIndex2Item: return "index2item";
    case LcRecTask::kFusionSeqRec: return "fusionseqrec";
    case LcRecTask::kItemSearch: return "itemsearch";
    case LcRecTask::kPreferenceObtain: return "preferenceobtain";
  }
  return "?";
}

LcRecTask parse_lcrec_task(const std::string& name, const std::string& path) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string names;
  for (LcRecTask t : kLcRecTasks) {
    if (lower == lcrec_task_name(t)) return t;
    names += std::string(names.empty() ? "" : ", ") + lcrec_task_name(t);
  }
  throw ConfigError(path, "unknown LC-Rec task '" + name + "' (expected one of " + names + ")");
}

uint32_t template_fields(const PromptTemplate& t) {
  uint32_t bits = 0;
  for (const char* text : {t.instruction, t.response})
    scan_template(text, [](std::string_view) {}, [&](std::string_view name) { bits |= field_named(name, text).bit; });
  return bits;
}

std::string render_template(const char* text, const PromptValues& values) {
  std::string out;
  scan_template(
      text, [&](std::string_view piece) { out.append(piece); },
      [&](std::string_view name) { out += values.*(field_named(name, text).value); });
  return out;
}

std::string alpaca_prompt(const std::string& instruction) {
  // sft_prompt.format(instruction=instruction, response=""): fill the two slots by position, so that
  // braces inside the instruction are not read again.
  const std::string_view sft(kLcRecSftPrompt);
  const std::string_view slot_i = "{instruction}", slot_r = "{response}";
  const size_t i = sft.find(slot_i), r = sft.find(slot_r);
  std::string out;
  out.reserve(sft.size() + instruction.size());
  out.append(sft.substr(0, i));
  out += instruction;
  out.append(sft.substr(i + slot_i.size(), r - i - slot_i.size()));
  out.append(sft.substr(r + slot_r.size()));
  return out;
}

RenderedPrompt render_prompt(const PromptTemplate& t, const PromptValues& values) {
  return {alpaca_prompt(render_template(t.instruction, values)), render_template(t.response, values)};
}

std::string clean_title(const std::string& title) {
  const std::string_view s(title);
  size_t b = 0, e = s.size();
  while (b < e) {
    const size_t n = space_at(s, b);
    if (n == 0 || b + n > e) break;
    b += n;
  }
  while (e > b) {
    const size_t n = space_before(s, e);
    if (n == 0 || e - n < b) break;
    e -= n;
  }
  constexpr std::string_view kPunct = ".!?,;:`";
  while (b < e && kPunct.find(s[b]) != std::string_view::npos) ++b;
  while (e > b && kPunct.find(s[e - 1]) != std::string_view::npos) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace seqrec::data
