// libFuzzer target: the YAML config and `--set` overrides (ConfigNode). The input is YAML text, then
// optionally a NUL byte and newline-separated overrides "a.b=value". Typed reads of a few keys and
// finish() run on the result; the resolved tree's dump() must parse again (seqrec writes it as a
// run's config.yaml). ConfigError is expected; anything else is a finding.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "seqrec/config/config_node.h"

namespace {

using seqrec::config::ConfigNode;

template <class T>
void try_get(ConfigNode node, const std::string& key) {
  seqrec::fuzz::expect_ok_or_error([&] { node.get<T>(key, T{}); });
}

void typed_reads(ConfigNode node, int depth) {
  for (const char* key : {"a", "model", "train"}) {
    try_get<bool>(node, key);
    try_get<int64_t>(node, key);
    try_get<double>(node, key);
    try_get<std::string>(node, key);
    try_get<std::vector<int64_t>>(node, key);
    try_get<std::vector<double>>(node, key);
    try_get<std::vector<std::string>>(node, key);
    if (depth < 1) {
      seqrec::fuzz::expect_ok_or_error([&] { typed_reads(node.child(key), depth + 1); });
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    size_t begin = nul + 1;
    while (begin <= input.size() && overrides.size() < 16) {
      size_t end = input.find('\n', begin);
      if (end == std::string::npos) end = input.size();
      overrides.push_back(input.substr(begin, end - begin));
      begin = end + 1;
    }
  }
  ConfigNode root;
  if (!seqrec::fuzz::expect_ok_or_error([&] { root = ConfigNode::parse(yaml, "fuzz.yaml"); })) return 0;
  for (const std::string& o : overrides) {
    seqrec::fuzz::expect_ok_or_error([&] { root.apply_override(o); });
  }
  const std::string dumped = root.dump();
  try {
    ConfigNode::parse(dumped, "dump.yaml");
  } catch (const seqrec::Error& e) {
    seqrec::fuzz::finding(std::string("the dump of a parsed config does not parse: ") + e.what() +
                          "\n--- dump ---\n" + dumped);
  }
  typed_reads(root, 0);
  seqrec::fuzz::expect_ok_or_error([&] { root.finish(); });
  return 0;
}
