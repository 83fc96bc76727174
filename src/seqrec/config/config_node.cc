// ConfigNode over yaml-cpp. This is the only translation unit that includes yaml-cpp, so the
// rest of seqrec (and its compile times) never see it.
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/utf8.h"

namespace seqrec::config {
namespace {

/// The shared state behind every ConfigNode of one tree (named here so helpers can use it).
struct TreeState {
  YAML::Node root = YAML::Node(YAML::NodeType::Map);
  /// Full dotted paths read as a value by get()/require().
  std::set<std::string> read;
  /// Full dotted paths handed out by child().
  std::set<std::string> children;
};

}  // namespace

struct ConfigNode::Impl : TreeState {};

namespace {

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  if (path.empty()) return parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

/// Short human text of a node for error messages ("abc", "[1, 2]", "null").
std::string node_text(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

/// Shortest decimal text that round-trips, always recognisable as a float ("1.0", not "1").
std::string format_double(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

bool parse_int64(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  // strtoll alone would accept leading spaces and hex-less junk like "12abc" up to the junk.
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (size_t j = i; j < s.size(); ++j)
    if (s[j] < '0' || s[j] > '9') return false;
  errno = 0;
  long long v = std::strtoll(s.c_str(), nullptr, 10);
  if (errno == ERANGE) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

bool parse_double(const std::string& s, double* out) {
  // YAML spellings of the special values (strtod knows "inf"/"nan", not ".inf").
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
    *out = -HUGE_VAL;
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *out = std::nan("");
    return true;
  }
  if (s.empty()) return false;
  // Only plain decimal notation: no hex floats, no leading whitespace, no "inf" words.
  for (char c : s)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE) return false;
  *out = v;
  return true;
}

bool parse_bool(const std::string& s, bool* out) {
  if (s == "true" || s == "True" || s == "TRUE") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *out = false;
    return true;
  }
  return false;
}

// Per-type decoding and encoding. decode() returns false on a type mismatch.
template <typename T>
struct Codec;

template <>
struct Codec<bool> {
  static const char* name() { return "boolean (true/false)"; }
  static bool decode(const YAML::Node& n, bool* out) {
    return n.IsScalar() && parse_bool(n.Scalar(), out);
  }
  static YAML::Node encode(bool v) { return YAML::Node(v ? "true" : "false"); }
};

template <>
struct Codec<int64_t> {
  static const char* name() { return "integer"; }
  static bool decode(const YAML::Node& n, int64_t* out) {
    return n.IsScalar() && parse_int64(n.Scalar(), out);
  }
  static YAML::Node encode(int64_t v) { return YAML::Node(std::to_string(v)); }
};

template <>
struct Codec<double> {
  static const char* name() { return "number"; }
  static bool decode(const YAML::Node& n, double* out) {
    return n.IsScalar() && parse_double(n.Scalar(), out);
  }
  static YAML::Node encode(double v) { return YAML::Node(format_double(v)); }
};

template <>
struct Codec<std::string> {
  static const char* name() { return "string"; }
  static bool decode(const YAML::Node& n, std::string* out) {
    if (!n.IsScalar()) return false;
    *out = n.Scalar();
    return true;
  }
  // The emitter quotes "" itself; "123" or "true" stay plain, which get<std::string> accepts.
  static YAML::Node encode(const std::string& v) { return YAML::Node(v); }
};

template <typename E>
struct Codec<std::vector<E>> {
  static std::string name() { return std::string("list of ") + Codec<E>::name() + " values"; }
  static YAML::Node encode(const std::vector<E>& v) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& e : v) n.push_back(Codec<E>::encode(e));
    n.SetStyle(YAML::EmitterStyle::Flow);
    return n;
  }
};

/// Decodes `n` at `full` into T or throws the type-mismatch ConfigError.
template <typename T>
T decode_or_throw(const YAML::Node& n, const std::string& full) {
  T value{};
  if (!Codec<T>::decode(n, &value))
    throw ConfigError(full, std::string("expected ") + Codec<T>::name() + ", got '" +
                                node_text(n) + "'");
  return value;
}

template <typename T>
struct Decoder {
  static T run(const YAML::Node& n, const std::string& full) { return decode_or_throw<T>(n, full); }
};

template <typename E>
struct Decoder<std::vector<E>> {
  static std::vector<E> run(const YAML::Node& n, const std::string& full) {
    if (!n.IsSequence())
      throw ConfigError(full, "expected " + Codec<std::vector<E>>::name() + ", got '" +
                                  node_text(n) + "'");
    std::vector<E> out;
    out.reserve(n.size());
    for (size_t i = 0; i < n.size(); ++i)
      out.push_back(decode_or_throw<E>(n[i], full + "[" + std::to_string(i) + "]"));
    return out;
  }
};

/// Child `key` of mapping `m`, or an undefined node; never modifies `m`.
YAML::Node lookup(const YAML::Node& m, const std::string& key) {
  if (!m.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (auto it = m.begin(); it != m.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  return YAML::Node(YAML::NodeType::Undefined);
}

/// Candidates for "did you mean": keys read or child()-ed directly under `path`.
std::vector<std::string> known_keys(const TreeState& impl, const std::string& path) {
  std::set<std::string> out;
  auto collect = [&](const std::set<std::string>& s) {
    for (const auto& full : s) {
      size_t dot = full.rfind('.');
      std::string parent = dot == std::string::npos ? "" : full.substr(0, dot);
      if (parent == path) out.insert(dot == std::string::npos ? full : full.substr(dot + 1));
    }
  };
  collect(impl.read);
  collect(impl.children);
  return {out.begin(), out.end()};
}

std::string unknown_key_message(const std::vector<std::string>& known, const std::string& key,
                                const std::string& path) {
  std::string best;
  int64_t best_d = 4;
  for (const auto& k : known) {
    int64_t d = edit_distance(k, key);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  if (!best.empty()) return "unknown key (did you mean '" + best + "'?)";
  if (known.empty())
    return path.empty() ? "unknown key (no keys are read at the top level)"
                        : "unknown key (no keys are read under '" + path + "')";
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  return "unknown key (valid keys: " + list + ")";
}

void check_unread(const TreeState& impl, const YAML::Node& node, const std::string& path) {
  if (!node.IsMap()) return;
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = it->first.IsScalar() ? it->first.Scalar() : node_text(it->first);
    std::string full = join(path, key);
    if (impl.read.count(full)) continue;
    if (impl.children.count(full)) {
      check_unread(impl, it->second, full);
      continue;
    }
    throw ConfigError(full, unknown_key_message(known_keys(impl, path), key, path));
  }
}

// The first byte of `text` that a config may not hold: invalid UTF-8, or NUL.
size_t first_bad_byte(const std::string& text) {
  return std::min(utf8_valid_prefix(text), std::min(text.find('\0'), text.size()));
}

// yaml-cpp writes invalid UTF-8 as U+FFFD: keys that differ only there would collide in the
// dumped config.yaml, and values would change. It also takes text with NUL bytes for UTF-16 or
// UTF-32 and decodes it as such. A YAML stream is printable Unicode text: refuse the rest.
void check_utf8(const std::string& text, const std::string& origin) {
  const size_t bad = first_bad_byte(text);
  if (bad == text.size()) return;
  const size_t line_begin = text.rfind('\n', bad == 0 ? 0 : bad - 1);
  const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
  const size_t column = bad - (line_begin == std::string::npos || bad == 0 ? 0 : line_begin + 1) + 1;
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
  throw ConfigError("", origin + ":" + std::to_string(line) + ":" + std::to_string(column) +
                            (text[bad] == '\0' ? std::string(": a NUL byte") : ": not valid UTF-8 (byte " + std::string(hex) + ")") +
                            ": expected UTF-8 text");
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  check_utf8(text, origin);
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    // yaml-cpp marks are 0-based; editors count from 1.
    throw ConfigError("", origin + ":" + std::to_string(e.mark.line + 1) + ":" +
                              std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError("", origin + ": cannot parse YAML: " + e.what());
  }
}

/// Deeper nesting than any config needs; in practice a recursive alias (`a: &x [*x]`), which
/// yaml-cpp builds as a cycle that every walk of the tree would follow forever.
constexpr int kMaxConfigDepth = 64;

// yaml-cpp keeps both entries of a key given twice and finds the first: refuse, naming both lines.
// Also refuses nesting deeper than kMaxConfigDepth. `origin` is a file (its line numbers are
// given) or a --set assignment (one line: none are given).
void check_duplicate_keys(const YAML::Node& node, const std::string& origin, bool lines, const std::string& path,
                          int depth = 0) {
  auto at = [&](const YAML::Node& n) { return lines ? origin + ":" + std::to_string(n.Mark().line + 1) : origin; };
  if (depth > kMaxConfigDepth && (node.IsSequence() || node.IsMap())) {
    throw ConfigError("", at(node) + ": " + path.substr(0, 200) + ": nested deeper than " +
                              std::to_string(kMaxConfigDepth) + " levels (an alias that refers to itself?)");
  }
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i)
      check_duplicate_keys(node[i], origin, lines, path + "[" + std::to_string(i) + "]", depth + 1);
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, int> first_line;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : node_text(kv.first);
    const std::string full = path.empty() ? key : path + "." + key;
    const int line = kv.first.Mark().line + 1;
    const auto [it, fresh] = first_line.emplace(key, line);
    if (!fresh)
      throw ConfigError("", at(kv.first) + ": " + full + ": duplicate key" +
                                (lines ? " (first at line " + std::to_string(it->second) + ")" : ""));
    check_duplicate_keys(kv.second, origin, lines, full, depth + 1);
  }
}

}  // namespace

ConfigNode::ConfigNode() : impl_(std::make_shared<Impl>()) {}

ConfigNode::ConfigNode(std::shared_ptr<Impl> impl, std::string path)
    : impl_(std::move(impl)), path_(std::move(path)) {}

ConfigNode ConfigNode::parse(const std::string& text, const std::string& origin) {
  YAML::Node root = parse_yaml(text, origin);
  ConfigNode out;
  if (!root.IsDefined() || root.IsNull()) return out;  // empty document: empty config
  if (!root.IsMap())
    throw ConfigError("", origin + ": the top level must be a mapping of keys, got '" +
                              node_text(root) + "'");
  check_duplicate_keys(root, origin, true, "");
  out.impl_->root = root;
  return out;
}

ConfigNode ConfigNode::load_file(const std::string& file) {
  // An ifstream opens a directory and reads nothing: that would be an empty config.
  if (is_directory(file)) throw ConfigError("", "cannot read config '" + file + "': is a directory, expected a YAML file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError("", "cannot read config '" + file + "': " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("", "cannot read config '" + file + "': read error");
  return parse(text.str(), file);
}

namespace {

/// The mapping at `path` below `root`, creating (or replacing nulls with) empty mappings when
/// `create`; throws ConfigError when a step is a scalar or list. `where` prefixes errors.
YAML::Node walk(YAML::Node root, const std::vector<std::string>& parts, bool create,
                const std::string& base, const std::string& where) {
  YAML::Node cur = root;
  std::string full = base;
  for (const auto& part : parts) {
    full = join(full, part);
    if (!cur.IsMap()) throw ConfigError(where, "'" + full + "' is not under a mapping");
    YAML::Node next = lookup(cur, part);
    if (!next.IsDefined() || next.IsNull()) {
      if (!create) return YAML::Node(YAML::NodeType::Undefined);
      // Keep a handle on the new mapping itself: looking it up again through a mapping created
      // in this same walk crashed yaml-cpp 0.7 ("a.b.c=1" on an empty tree).
      next = YAML::Node(YAML::NodeType::Map);
      cur[part] = next;
    } else if (!next.IsMap()) {
      throw ConfigError(where.empty() ? full : where,
                        "expected a mapping at '" + full + "', got '" + node_text(next) + "'");
    }
    // reset() rebinds the handle; plain assignment would overwrite the tree node.
    cur.reset(next);
  }
  return cur;
}

}  // namespace

void ConfigNode::apply_override(const std::string& assignment) {
  const std::string where = "--set " + assignment;
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw ConfigError(where, "expected key=value");
  if (const size_t bad = first_bad_byte(assignment); bad != assignment.size()) {
    throw ConfigError("--set " + assignment.substr(0, bad) + "...",
                      std::string(assignment[bad] == '\0' ? "a NUL byte" : "not valid UTF-8") + ": expected UTF-8 text");
  }
  std::string dotted = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  std::vector<std::string> parts = split_path(dotted);
  for (const auto& p : parts)
    if (p.empty()) throw ConfigError(where, "empty key segment in '" + dotted + "'");

  YAML::Node value;
  if (text.empty()) {
    value = YAML::Node(std::string());
  } else {
    try {
      value = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError(where, "cannot parse value '" + text + "' as YAML: " + e.msg);
    }
    // "a: b" or "x #y" parse as a mapping / comment; the user meant the literal text.
    bool explicit_map = !text.empty() && text[0] == '{';
    if (!value.IsDefined() || (value.IsMap() && !explicit_map) ||
        (value.IsNull() && text != "null" && text != "~"))
      value = YAML::Node(text);
    check_duplicate_keys(value, where, false, "value");
  }

  std::vector<std::string> parents(parts.begin(), parts.end() - 1);
  YAML::Node self = walk(impl_->root, split_path(path_), true, "", where);
  YAML::Node parent = walk(self, parents, true, path_, where);
  parent[parts.back()] = value;
}

const std::string& ConfigNode::path() const { return path_; }

bool ConfigNode::has(const std::string& key) const {
  YAML::Node self = walk(impl_->root, split_path(path_), false, "", path_);
  YAML::Node v = lookup(self, key);
  return v.IsDefined() && !v.IsNull();
}

ConfigNode ConfigNode::child(const std::string& key) {
  std::string full = join(path_, key);
  walk(impl_->root, split_path(full), true, "", full);
  impl_->children.insert(full);
  return ConfigNode(impl_, full);
}

template <typename T>
T ConfigNode::get(const std::string& key, const T& default_value) {
  std::string full = join(path_, key);
  YAML::Node self = walk(impl_->root, split_path(path_), true, "", path_);
  impl_->read.insert(full);
  YAML::Node v = lookup(self, key);
  if (!v.IsDefined() || v.IsNull()) {
    // Written back so that dump() shows the resolved config.
    self[key] = Codec<T>::encode(default_value);
    return default_value;
  }
  return Decoder<T>::run(v, full);
}

template <typename T>
T ConfigNode::require(const std::string& key) {
  std::string full = join(path_, key);
  YAML::Node self = walk(impl_->root, split_path(path_), false, "", path_);
  impl_->read.insert(full);
  YAML::Node v = lookup(self, key);
  if (!v.IsDefined() || v.IsNull()) throw ConfigError(full, "required key is missing");
  return Decoder<T>::run(v, full);
}

// get/require live here (yaml-cpp stays private), so every supported T is instantiated here.
#define SEQREC_INSTANTIATE(T)                                    \
  template T ConfigNode::get<T>(const std::string&, const T&); \
  template T ConfigNode::require<T>(const std::string&);
SEQREC_INSTANTIATE(bool)
SEQREC_INSTANTIATE(int64_t)
SEQREC_INSTANTIATE(double)
SEQREC_INSTANTIATE(std::string)
SEQREC_INSTANTIATE(std::vector<int64_t>)
SEQREC_INSTANTIATE(std::vector<double>)
SEQREC_INSTANTIATE(std::vector<std::string>)
#undef SEQREC_INSTANTIATE

void ConfigNode::ignore(const std::string& key) { impl_->read.insert(join(path_, key)); }

void ConfigNode::finish() const {
  YAML::Node self = walk(impl_->root, split_path(path_), false, "", path_);
  if (self.IsDefined()) check_unread(*impl_, self, path_);
}

std::string ConfigNode::dump() const {
  YAML::Node self = walk(impl_->root, split_path(path_), false, "", path_);
  if (!self.IsDefined()) return "{}\n";
  YAML::Emitter out;
  out << self;
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s += '\n';
  return s;
}

ConfigNode load_config(const std::string& file, const std::vector<std::string>& overrides) {
  ConfigNode root = file.empty() ? ConfigNode() : ConfigNode::load_file(file);
  for (const auto& o : overrides) root.apply_override(o);
  return root;
}

int64_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int64_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string key(const ConfigNode& node, const std::string& name) {
  return node.path().empty() ? name : node.path() + "." + name;
}

void require_positive(int64_t value, const std::string& path) {
  if (value < 1) throw ConfigError(path, "must be >= 1, got " + std::to_string(value));
}

void require_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path) {
  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) throw_not_one_of(value, allowed, path);
}

void throw_not_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path) {
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(path, "'" + value + "' is not one of: " + list);
}

}  // namespace seqrec::config
