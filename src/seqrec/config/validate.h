// Small helpers every options reader uses to name a key and check a value (ConfigError "path: ...").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::config {

class ConfigNode;

/// Dotted path of key `name` under `node` ("train.epochs"; just `name` under the root).
std::string key(const ConfigNode& node, const std::string& name);
/// Throws ConfigError(path, "must be >= 1, got N") when value < 1.
void require_positive(int64_t value, const std::string& path);
/// Throws ConfigError(path, "'v' is not one of: a, b") when value is not in `allowed`.
void require_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path);

}  // namespace seqrec::config
