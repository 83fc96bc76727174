// Small helpers every options reader uses to name a key and check a value (ConfigError "path: ...").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seqrec::config {

class ConfigNode;

/// Dotted path of key `name` under `node` ("train.epochs"; just `name` under the root).
std::string key(const ConfigNode& node, const std::string& name);
/// Throws ConfigError(path, "must be >= 1, got N") when value < 1.
void require_positive(int64_t value, const std::string& path);
/// Throws ConfigError(path, "'v' is not one of: a, b") when value is not in `allowed`.
void require_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path);
/// Throws ConfigError(path, "'v' is not one of: a, b"): the message of require_one_of.
[[noreturn]] void throw_not_one_of(const std::string& value, const std::vector<std::string>& allowed,
                                   const std::string& path);

/// The config spellings of an enum's values, in the order error messages list them.
template <class E>
using Spellings = std::vector<std::pair<E, std::string>>;

/// The spelling of `value` in `spellings` ("?" if the table lacks it: every table spells every value).
template <class E>
std::string spelling(E value, const Spellings<E>& spellings) {
  for (const auto& [e, s] : spellings)
    if (e == value) return s;
  return "?";
}

/// The value spelt `value` in `spellings`; throws as require_one_of does when there is none.
template <class E>
E parse_one_of(const std::string& value, const Spellings<E>& spellings, const std::string& path) {
  std::vector<std::string> allowed;
  for (const auto& [e, spelling] : spellings) {
    if (spelling == value) return e;
    allowed.push_back(spelling);
  }
  throw_not_one_of(value, allowed, path);
}

}  // namespace seqrec::config
