#include "seqrec/config/config_node.h"

#include <gtest/gtest.h>

#include "seqrec/common/error.h"
#include "support.h"

namespace seqrec::config {
namespace {

TEST(ConfigNodeTest, ReadsTypedValuesFromYaml) {
  ConfigNode root = ConfigNode::parse(
      "model:\n"
      "  hidden_dim: 64\n"
      "  dropout: 0.25\n"
      "  causal: true\n"
      "  name: sasrec\n"
      "train:\n"
      "  lr: 1e-3\n"
      "  epochs: 3\n"
      "  ks: [1, 5, 10]\n"
      "  names:\n"
      "    - a\n"
      "    - b\n"
      "  weights: [0.5, 2]\n");
  ConfigNode model = root.child("model");
  EXPECT_EQ(model.path(), "model");
  EXPECT_EQ(model.require<int64_t>("hidden_dim"), 64);
  EXPECT_DOUBLE_EQ(model.get<double>("dropout", 0.0), 0.25);
  EXPECT_TRUE(model.get<bool>("causal", false));
  EXPECT_EQ(model.get<std::string>("name", "x"), "sasrec");
  ConfigNode train = root.child("train");
  EXPECT_DOUBLE_EQ(train.get<double>("lr", 0.1), 1e-3);
  // Integers are valid doubles.
  EXPECT_DOUBLE_EQ(train.get<double>("epochs", 0.0), 3.0);
  EXPECT_EQ(train.get<std::vector<int64_t>>("ks", {}), (std::vector<int64_t>{1, 5, 10}));
  EXPECT_EQ(train.get<std::vector<std::string>>("names", {}),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(train.get<std::vector<double>>("weights", {}), (std::vector<double>{0.5, 2.0}));
  EXPECT_NO_THROW(root.finish());
}

TEST(ConfigNodeTest, DefaultsAreWrittenIntoTheTreeAndDumped) {
  ConfigNode root = ConfigNode::parse("model:\n  hidden_dim: 32\n");
  ConfigNode model = root.child("model");
  EXPECT_EQ(model.get<int64_t>("hidden_dim", 64), 32);  // file value wins over the default
  EXPECT_EQ(model.get<int64_t>("num_layers", 2), 2);
  EXPECT_DOUBLE_EQ(root.child("train").get<double>("lr", 0.001), 0.001);
  EXPECT_EQ(root.child("eval").get<std::vector<int64_t>>("ks", {10, 20}),
            (std::vector<int64_t>{10, 20}));
  EXPECT_FALSE(root.child("eval").get<bool>("verbose", false));
  EXPECT_TRUE(model.has("num_layers"));

  // The dump is the resolved config: re-parsing it gives the same values without defaults.
  std::string text = root.dump();
  EXPECT_NE(text.find("num_layers: 2"), std::string::npos) << text;
  EXPECT_NE(text.find("hidden_dim: 32"), std::string::npos) << text;
  EXPECT_NE(text.find("lr: 0.001"), std::string::npos) << text;
  ConfigNode again = ConfigNode::parse(text);
  EXPECT_EQ(again.child("model").require<int64_t>("num_layers"), 2);
  EXPECT_DOUBLE_EQ(again.child("train").require<double>("lr"), 0.001);
  EXPECT_EQ(again.child("eval").require<std::vector<int64_t>>("ks"),
            (std::vector<int64_t>{10, 20}));
  EXPECT_FALSE(again.child("eval").require<bool>("verbose"));

  // A subtree dumps on its own.
  EXPECT_NE(model.dump().find("num_layers: 2"), std::string::npos);
  EXPECT_EQ(model.dump().find("lr:"), std::string::npos);
}

TEST(ConfigNodeTest, DefaultsRoundTripTheirType) {
  ConfigNode root;
  root.get<double>("temperature", 1.0);
  root.get<std::string>("tag", "123");
  root.get<std::string>("empty", "");
  ConfigNode again = ConfigNode::parse(root.dump());
  EXPECT_DOUBLE_EQ(again.require<double>("temperature"), 1.0);
  EXPECT_EQ(again.require<std::string>("tag"), "123");
  EXPECT_EQ(again.get<std::string>("empty", "fallback"), "");
}

TEST(ConfigNodeTest, CopiesShareTreeAndReadState) {
  ConfigNode root = ConfigNode::parse("model:\n  hidden_dim: 8\n");
  ConfigNode copy = root;
  ConfigNode model_a = root.child("model");
  ConfigNode model_b = copy.child("model");
  EXPECT_EQ(model_b.get<int64_t>("hidden_dim", 1), 8);
  model_a.get<int64_t>("heads", 4);
  EXPECT_TRUE(model_b.has("heads"));
  // Reads through one handle satisfy finish() on another.
  EXPECT_NO_THROW(root.finish());
}

TEST(ConfigNodeTest, OverridesCreateNestedKeysAndReplaceFileValues) {
  seqrec::testing::TempDir dir;
  std::string file = dir.write("c.yaml",
                               "train:\n"
                               "  lr: 0.1\n"
                               "  epochs: 5\n");
  ConfigNode root = load_config(file, {"train.lr=1e-3", "train.optim.betas=[0.9, 0.98]",
                                       "model.name=bert4rec", "model.causal=false",
                                       "data.url=http://x/y", "model.tag="});
  ConfigNode train = root.child("train");
  EXPECT_DOUBLE_EQ(train.get<double>("lr", 0.5), 1e-3);
  EXPECT_EQ(train.get<int64_t>("epochs", 1), 5);
  EXPECT_EQ(train.child("optim").get<std::vector<double>>("betas", {}),
            (std::vector<double>{0.9, 0.98}));
  ConfigNode model = root.child("model");
  EXPECT_EQ(model.require<std::string>("name"), "bert4rec");
  EXPECT_FALSE(model.require<bool>("causal"));
  EXPECT_EQ(model.get<std::string>("tag", "none"), "");
  EXPECT_EQ(root.child("data").require<std::string>("url"), "http://x/y");
  EXPECT_NO_THROW(root.finish());
}

TEST(ConfigNodeTest, OverridesApplyInOrder) {
  ConfigNode root = load_config("", {"a.b=1", "a.b=2"});
  EXPECT_EQ(root.child("a").require<int64_t>("b"), 2);
}

TEST(ConfigNodeTest, OverrideOnScalarParentIsAnError) {
  ConfigNode root = ConfigNode::parse("train: 5\n");
  ASSERT_THROWS_WITH(root.apply_override("train.lr=1"), "--set train.lr=1");
}

TEST(ConfigNodeTest, BadOverrideSyntax) {
  ConfigNode root;
  ASSERT_THROWS_WITH(root.apply_override("abc"), "--set abc: expected key=value");
  ASSERT_THROWS_WITH(root.apply_override("=3"), "expected key=value");
  ASSERT_THROWS_WITH(root.apply_override("a..b=3"), "empty key segment");
  ASSERT_THROWS_WITH(load_config("", {"train.lr"}), "--set train.lr: expected key=value");
  EXPECT_THROW(root.apply_override("abc"), ConfigError);
}

TEST(ConfigNodeTest, UnknownKeySuggestsNearestReadKey) {
  ConfigNode root = ConfigNode::parse(
      "model:\n"
      "  hiden_dim: 64\n"
      "  num_layers: 2\n");
  ConfigNode model = root.child("model");
  model.get<int64_t>("hidden_dim", 32);
  model.get<int64_t>("num_layers", 1);
  model.get<int64_t>("num_heads", 1);
  ASSERT_THROWS_WITH(root.finish(), "model.hiden_dim: unknown key (did you mean 'hidden_dim'?)");
  // finish() on the subtree finds the same key.
  ASSERT_THROWS_WITH(model.finish(), "model.hiden_dim: unknown key (did you mean 'hidden_dim'?)");
}

TEST(ConfigNodeTest, UnknownKeyListsValidKeysWhenNothingIsClose) {
  ConfigNode root = ConfigNode::parse("train:\n  epochs: 1\n  zzzzzzzz: 3\n");
  ConfigNode train = root.child("train");
  train.get<int64_t>("epochs", 1);
  train.get<double>("lr", 0.1);
  ASSERT_THROWS_WITH(root.finish(), "train.zzzzzzzz: unknown key (valid keys: epochs, lr)");
}

TEST(ConfigNodeTest, UnreadSectionIsUnknown) {
  ConfigNode root = ConfigNode::parse("modle:\n  hidden_dim: 1\nmodel:\n  hidden_dim: 2\n");
  root.child("model").get<int64_t>("hidden_dim", 0);
  ASSERT_THROWS_WITH(root.finish(), "modle: unknown key (did you mean 'model'?)");
}

TEST(ConfigNodeTest, UnknownKeyFromOverrideIsReported) {
  ConfigNode root = load_config("", {"train.lrr=0.1"});
  root.child("train").get<double>("lr", 0.01);
  ASSERT_THROWS_WITH(root.finish(), "train.lrr: unknown key (did you mean 'lr'?)");
}

TEST(ConfigNodeTest, TypeMismatchesNameThePathAndValue) {
  ConfigNode root = ConfigNode::parse(
      "model:\n"
      "  hidden_dim: abc\n"
      "  ratio: 1.5\n"
      "  flag: maybe\n"
      "  lr: fast\n"
      "  ks: [1, x]\n"
      "  scalar: 3\n"
      "  section: {a: 1}\n");
  ConfigNode model = root.child("model");
  ASSERT_THROWS_WITH(model.get<int64_t>("hidden_dim", 1),
                     "model.hidden_dim: expected integer, got 'abc'");
  ASSERT_THROWS_WITH(model.get<int64_t>("ratio", 1), "model.ratio: expected integer, got '1.5'");
  ASSERT_THROWS_WITH(model.get<bool>("flag", false), "model.flag: expected boolean");
  ASSERT_THROWS_WITH(model.get<double>("lr", 0.1), "model.lr: expected number, got 'fast'");
  ASSERT_THROWS_WITH(model.get<std::vector<int64_t>>("ks", {}),
                     "model.ks[1]: expected integer, got 'x'");
  ASSERT_THROWS_WITH(model.get<std::vector<int64_t>>("scalar", {}),
                     "model.scalar: expected list of integer values, got '3'");
  ASSERT_THROWS_WITH(model.get<std::string>("section", ""), "model.section: expected string");
  // A mapping expected where a scalar sits.
  ASSERT_THROWS_WITH(model.child("scalar"), "model.scalar");
  EXPECT_THROW(model.get<int64_t>("hidden_dim", 1), ConfigError);
}

TEST(ConfigNodeTest, MissingRequiredKey) {
  ConfigNode root = ConfigNode::parse("data:\n  dir: /x\n");
  ASSERT_THROWS_WITH(root.child("data").require<std::string>("format"),
                     "data.format: required key is missing");
  ASSERT_THROWS_WITH(root.require<int64_t>("seed"), "seed: required key is missing");
  ASSERT_THROWS_WITH(root.child("absent").require<double>("x"),
                     "absent.x: required key is missing");
}

TEST(ConfigNodeTest, YamlSyntaxErrorNamesFileAndLine) {
  seqrec::testing::TempDir dir;
  std::string file = dir.write("broken.yaml",
                               "model:\n"
                               "  hidden_dim: 64\n"
                               "  ks: [1, 2\n");
  try {
    ConfigNode::load_file(file);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    // The unterminated flow sequence is reported on (1-based) line 3 or at the end (line 4).
    EXPECT_TRUE(msg.find(file + ":3:") != std::string::npos ||
                msg.find(file + ":4:") != std::string::npos)
        << msg;
  }
  // A tab used for indentation is reported on its line.
  std::string tab_file = dir.write("tab.yaml", "a: 1\nb:\n\tc: 2\n");
  ASSERT_THROWS_WITH(ConfigNode::load_file(tab_file), tab_file + ":3:");
  ASSERT_THROWS_WITH(ConfigNode::parse("a: b: c\n", "inline.yaml"), "inline.yaml:1:");
}

TEST(ConfigNodeTest, UnreadableFileNamesTheFile) {
  ASSERT_THROWS_WITH(load_config("/nonexistent/x.yaml", {}),
                     "cannot read config '/nonexistent/x.yaml'");
}

// Issue 21, defect 8: `--config DIR` ran on the defaults with exit 0, and a key given twice was
// accepted (the first won) with both copies in the resolved config.yaml.
TEST(ConfigNodeTest, ADirectoryIsNotAConfigFile) {
  seqrec::testing::TempDir dir;
  ASSERT_THROWS_WITH(load_config(dir.path(), {}), "cannot read config '" + dir.path() + "': is a directory");
}

// Found by fuzz/fuzz_config: yaml-cpp dumps invalid UTF-8 as U+FFFD, so two keys that differ in
// such bytes were accepted and then collided in the resolved config.yaml (which did not load).
TEST(ConfigNodeTest, InvalidUtf8IsRefusedNamingLineAndColumn) {
  ASSERT_THROWS_WITH(ConfigNode::parse("model: sasrec\nk\xFF: 1\nk\xFE: 2\n", "bad.yaml"),
                     "bad.yaml:2:2: not valid UTF-8 (byte 0xFF): expected UTF-8 text");
  ASSERT_THROWS_WITH(ConfigNode::parse("\xC0\xAF: 1\n", "overlong.yaml"), "overlong.yaml:1:1: not valid UTF-8 (byte 0xC0)");
  ConfigNode root = ConfigNode::parse("name: caf\xC3\xA9 \xE6\x97\xA5\n", "ok.yaml");
  EXPECT_EQ(root.get<std::string>("name", ""), "caf\xC3\xA9 \xE6\x97\xA5");
  EXPECT_EQ(ConfigNode::parse(root.dump(), "dump.yaml").get<std::string>("name", ""), "caf\xC3\xA9 \xE6\x97\xA5");
  ASSERT_THROWS_WITH(root.apply_override("data.path=a\xE9.csv"), "--set data.path=a...: not valid UTF-8");
  // Found by fuzz/fuzz_config too: yaml-cpp decoded a value with NUL bytes as UTF-32 ("0\0\0\0...")
  // and dumped invalid UTF-8. NUL is refused in files and overrides.
  ASSERT_THROWS_WITH(root.apply_override(std::string("a.lr=0\0\0\0et x", 13)), "--set a.lr=0...: a NUL byte");
  ASSERT_THROWS_WITH(ConfigNode::parse(std::string("a: 1\nb: \0\0\0x\n", 13), "nul.yaml"), "nul.yaml:2:4: a NUL byte");
  EXPECT_EQ(ConfigNode::parse("s: \"\\u00E9\\x41\"\n", "e.yaml").get<std::string>("s", ""), "\xC3\xA9" "A");
}

TEST(ConfigNodeTest, DuplicateKeysAreRefusedWithBothLines) {
  const std::string text = "train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n";
  ASSERT_THROWS_WITH(ConfigNode::parse(text, "dup.yaml"), "dup.yaml:4: train.lr: duplicate key (first at line 2)");
  ASSERT_THROWS_WITH(ConfigNode::parse("a: 1\nb: 2\na: 3\n", "top.yaml"), "top.yaml:3: a: duplicate key");
  // The same key in different mappings, and in list items, is fine.
  EXPECT_NO_THROW(ConfigNode::parse("a:\n  x: 1\nb:\n  x: 2\nl:\n  - {x: 1}\n  - {x: 2}\n", "ok.yaml"));
}

// Found by fuzz/fuzz_config: an alias inside its own anchor is a cycle in yaml-cpp's tree, and
// the duplicate-key walk recursed until the stack overflowed.
TEST(ConfigNodeTest, RecursiveAliasesAndDeepNestingAreRefused) {
  ASSERT_THROWS_WITH(ConfigNode::parse("base: &b {x: 1, y: [a, *b]}\n", "cycle.yaml"),
                     "cycle.yaml:1: base.y[1].y[1].y[1]");
  ASSERT_THROWS_WITH(ConfigNode::parse("base: &b {x: 1, y: [a, *b]}\n", "cycle.yaml"),
                     "nested deeper than 64 levels (an alias that refers to itself?)");
  ConfigNode root;
  // A --set value is one line: no line number (it used to say ":1").
  ASSERT_THROWS_WITH(root.apply_override("a.b=&x [1, *x]"), "--set a.b=&x [1, *x]: value[1][1]");
  ASSERT_THROWS_WITH(root.apply_override("a.b={k: 1, k: 2}"), "--set a.b={k: 1, k: 2}: value.k: duplicate key");
  try {
    root.apply_override("a.b={k: 1, k: 2}");
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("first at line"), std::string::npos) << e.what();
  }
  // Aliases that do not refer to themselves, and nesting of 64 levels, are fine.
  EXPECT_NO_THROW(ConfigNode::parse("base: &b {x: 1}\nmodel: *b\n", "ok.yaml"));
  EXPECT_NO_THROW(ConfigNode::parse("a: " + std::string(64, '[') + std::string(64, ']') + "\n", "deep.yaml"));
}

TEST(ConfigNodeTest, TopLevelMustBeAMapping) {
  ASSERT_THROWS_WITH(ConfigNode::parse("- a\n- b\n", "list.yaml"), "list.yaml");
  // An empty document is an empty config.
  ConfigNode empty = ConfigNode::parse("", "empty.yaml");
  EXPECT_EQ(empty.get<int64_t>("x", 7), 7);
  EXPECT_NO_THROW(empty.finish());
}

TEST(ConfigNodeTest, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0);
  EXPECT_EQ(edit_distance("abc", ""), 3);
  EXPECT_EQ(edit_distance("hiden_dim", "hidden_dim"), 1);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2);
}

// Several missing levels at once (`--set serve.index.kind=hnsw` with no serve: section) used to
// crash yaml-cpp.
TEST(ConfigNodeTest, OverrideCreatesSeveralMissingLevels) {
  ConfigNode root = load_config("", {"serve.index.kind=hnsw", "serve.index.nprobe=4", "a.b.c.d=x"});
  ConfigNode index = root.child("serve").child("index");
  EXPECT_EQ(index.get<std::string>("kind", "exact"), "hnsw");
  EXPECT_EQ(index.get<int64_t>("nprobe", 16), 4);
  EXPECT_EQ(root.child("a").child("b").child("c").get<std::string>("d", ""), "x");
  root.finish();
}

}  // namespace
}  // namespace seqrec::config
