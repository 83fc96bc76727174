// ConfigNode: the YAML tree behind a pimpl (the only yaml-cpp user is config_node.cc).
//
// Reading records every key that was asked for, and fills in defaults, so that
//  - finish() rejects keys nobody read: "model.hiden_dim: unknown key (did you mean 'hidden_dim'?)";
//  - dump() after reading gives the fully resolved config (defaults included).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqrec::config {

/// A node of a YAML mapping tree with a dotted path ("" for the root, "model", "train.loss").
/// Copies share the underlying tree (reference semantics).
class ConfigNode {
 public:
  /// An empty mapping (root).
  ConfigNode();
  /// Parses a YAML file; throws ConfigError naming the file (and line for syntax errors).
  static ConfigNode load_file(const std::string& file);
  /// Parses YAML text; `origin` names it in errors.
  static ConfigNode parse(const std::string& text, const std::string& origin = "<string>");

  /// Applies "a.b.c=value" (value parsed as YAML: numbers, bools, [lists], strings), creating
  /// mappings on the way. Throws ConfigError for a malformed override.
  void apply_override(const std::string& assignment);

  /// Dotted path of this node.
  const std::string& path() const;
  /// Whether key exists here.
  bool has(const std::string& key) const;
  /// Child mapping (created empty if absent). Throws ConfigError if key holds a non-mapping.
  ConfigNode child(const std::string& key);

  /// Typed read with default; the default is written into the tree when absent. Throws ConfigError
  /// "path.key: expected <type>, got '<text>'" on a type mismatch. Supported T: bool, int64_t,
  /// double, std::string, std::vector<int64_t>, std::vector<double>, std::vector<std::string>.
  template <typename T>
  T get(const std::string& key, const T& default_value);
  /// Typed read of a key that must exist; throws ConfigError "path.key: required key is missing".
  template <typename T>
  T require(const std::string& key);

  /// Throws ConfigError for the first key (recursively) that was never read or child()-ed, with a
  /// suggestion from the keys that were read at that level (edit distance <= 3).
  void finish() const;

  /// Marks `key` and its whole subtree as read if present (a section meant for another command),
  /// so finish() accepts it.
  void ignore(const std::string& key);

  /// YAML text of this subtree.
  std::string dump() const;

 private:
  struct Impl;
  ConfigNode(std::shared_ptr<Impl> impl, std::string path);
  std::shared_ptr<Impl> impl_;
  std::string path_;
};

/// Loads `file` (may be empty: start from an empty tree) and applies the overrides in order.
ConfigNode load_config(const std::string& file, const std::vector<std::string>& overrides);

/// Levenshtein distance (exposed for tests).
int64_t edit_distance(const std::string& a, const std::string& b);

}  // namespace seqrec::config
