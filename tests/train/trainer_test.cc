// Tests of checkpoints and the training loop (short runs on synthetic data).
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/batcher.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/prepare.h"
#include "seqrec/data/split.h"
#include "seqrec/data/synthetic.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/models/most_pop.h"
#include "seqrec/models/registry.h"
#include "seqrec/models/sasrec.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/losses.h"
#include "seqrec/train/trainer.h"
#include "support.h"

namespace seqrec::train {
namespace {

using seqrec::testing::TempDir;

constexpr int64_t kMaxLen = 20;
const char* kModelYaml =
    "name: sasrec\nvariant: gr\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\ndropout: 0.2\nl2_norm_output: true\n";

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Synthetic data (200 users, 100 items) prepared once for the suite.
class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    data::SynthOptions s;
    s.num_users = 200;
    s.num_items = 100;
    s.num_clusters = 10;
    s.min_seq_len = 5;
    s.max_seq_len = 40;
    s.seed = 5;
    s.output = dir_->file("raw");
    data::generate_synthetic(s);
    data::PrepareOptions p;
    p.input = dir_->file("raw/interactions.csv");
    p.output = dir_->file("data");
    data::prepare(p);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { torch::set_num_threads(1); }

  static data::InteractionStore store() { return data::InteractionStore::open(dir_->file("data/interactions.bin")); }

  static models::ModelContext context(const data::InteractionStore& st) {
    models::ModelContext c;
    c.num_items = st.num_items();
    c.max_seq_len = kMaxLen;
    c.item_counts = data::train_item_counts(st);
    return c;
  }

  static models::SequenceRecommender build(const std::string& yaml, const models::ModelContext& ctx,
                                           uint64_t seed = 42) {
    torch::manual_seed(seed);
    auto node = config::ConfigNode::parse(yaml);
    auto m = models::make_model(node, ctx);
    node.finish();
    return m;
  }

  static TrainerSetup setup(const std::string& out_dir, int64_t epochs, const data::InteractionStore& st) {
    TrainerSetup s;
    s.data.dir = dir_->file("data");
    s.data.max_seq_len = kMaxLen;
    s.train.out_dir = out_dir;
    s.train.epochs = epochs;
    s.train.batch_size = 32;
    s.train.lr = 0.005;
    s.train.beta2 = 0.98;
    s.train.seed = 42;
    s.train.metric = "hr@10";
    s.train.log_every = 1000;
    s.train.loss.name = config::LossName::kSampledSoftmax;
    s.train.loss.num_negatives = 16;
    s.train.loss.temperature = 0.05;
    s.train.loss.exclude_history = false;
    s.eval.protocol = config::Protocol::kFull;
    s.eval.history_mask = config::HistoryMask::kFull;
    s.eval.ks = {10};
    s.model_yaml = kModelYaml;
    s.context = context(st);
    return s;
  }

  /// Mean loss of `model` (eval mode, no dropout) over the epoch-0 batches.
  static double mean_loss(models::SequenceRecommenderImpl& model, const data::InteractionStore& st,
                          const config::LossOptions& loss) {
    torch::NoGradGuard no_grad;
    model.eval();
    data::TrainBatcherOptions bo;
    bo.max_seq_len = kMaxLen;
    bo.batch_size = 32;
    bo.num_negatives = loss.num_negatives;
    data::TrainBatcher b(st, bo);
    b.start_epoch(0);
    data::SequenceBatch batch;
    double sum = 0;
    int64_t n = 0;
    while (b.next(&batch)) {
      sum += compute_loss(model, batch, loss).item<double>();
      ++n;
    }
    return sum / n;
  }

  static TempDir* dir_;
};

TempDir* TrainerTest::dir_ = nullptr;

void expect_same_tensors(const NamedTensors& a, const NamedTensors& b) {
  std::map<std::string, torch::Tensor> ma(a.begin(), a.end()), mb(b.begin(), b.end());
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [name, t] : ma) {
    ASSERT_TRUE(mb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, mb[name])) << name;
  }
}

TEST_F(TrainerTest, CheckpointRoundTripRebuildsTheModel) {
  auto st = store();
  auto ctx = context(st);
  auto model = build(kModelYaml, ctx, 7);
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  save_checkpoint(path, *model, kModelYaml, ctx);
  LoadedModel loaded = load_checkpoint(path);
  EXPECT_EQ(loaded.model_yaml, kModelYaml);
  EXPECT_EQ(loaded.context.num_items, st.num_items());
  EXPECT_EQ(loaded.context.max_seq_len, kMaxLen);
  auto sasrec = std::dynamic_pointer_cast<models::SasRecImpl>(loaded.model);
  ASSERT_NE(sasrec, nullptr);
  EXPECT_EQ(sasrec->options().hidden_dim, 16);
  EXPECT_EQ(sasrec->options().num_heads, 2);
  EXPECT_TRUE(sasrec->options().l2_norm_output);
  expect_same_tensors(model_state(*model), model_state(*loaded.model));

  auto q = data::eval_queries(st, data::Split::kTest);
  auto batch = data::make_eval_batch(q, 0, 16, kMaxLen);
  torch::NoGradGuard no_grad;
  model->eval();
  loaded.model->eval();
  EXPECT_TRUE(torch::equal(model->encode(batch), loaded.model->encode(batch)));
  // A differently initialised model really differs (the comparison above can fail).
  auto other = build(kModelYaml, ctx, 8);
  other->eval();
  EXPECT_FALSE(torch::equal(model->encode(batch), other->encode(batch)));
}

TEST_F(TrainerTest, MostPopCheckpointKeepsCounts) {
  auto st = store();
  auto ctx = context(st);
  auto model = build("name: most_pop\n", ctx);
  TempDir tmp;
  save_checkpoint(tmp.file("mp.safetensors"), *model, "name: most_pop\n", ctx);
  LoadedModel loaded = load_checkpoint(tmp.file("mp.safetensors"));
  EXPECT_TRUE(loaded.context.item_counts.empty());  // counts travel as the buffer
  auto all = loaded.model->all_item_embeddings().squeeze(1);
  ASSERT_EQ(all.size(0), st.num_items() + 1);
  for (int64_t i = 0; i <= st.num_items(); ++i) EXPECT_EQ(all[i].item<float>(), float(ctx.item_counts[i])) << i;
}

TEST_F(TrainerTest, TruncatedOrMissingCheckpointIsACheckpointError) {
  auto st = store();
  auto ctx = context(st);
  auto model = build(kModelYaml, ctx);
  TempDir tmp;
  save_checkpoint(tmp.file("full.safetensors"), *model, kModelYaml, ctx);
  const std::string bytes = read_bytes(tmp.file("full.safetensors"));
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t keep : {bytes.size() / 2, bytes.size() - 1, size_t(100), size_t(4)}) {
    const std::string path = tmp.write("cut.safetensors", bytes.substr(0, keep));
    try {
      load_checkpoint(path);
      FAIL() << "no error for a checkpoint cut to " << keep << " bytes";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  try {
    load_checkpoint(tmp.file("nope.safetensors"));
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos) << e.what();
  }
  // Plain safetensors without our metadata: a clear "not a seqrec checkpoint".
  save_tensors(tmp.file("plain.safetensors"), model_state(*model), {});
  ASSERT_THROWS_WITH(load_checkpoint(tmp.file("plain.safetensors")), "not a seqrec checkpoint");
}

TEST_F(TrainerTest, LoadStateIntoListsMissingAndUnexpectedNames) {
  auto st = store();
  auto model = build(kModelYaml, context(st));
  NamedTensors state;
  for (const auto& [n, t] : model_state(*model))
    if (n != "blocks.0.q_proj.weight") state.emplace_back(n, t.clone());
  state.emplace_back("foo.bar", torch::zeros({2}));
  try {
    load_state_into(*model, state, "ckpt.safetensors");
    FAIL();
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ckpt.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing: blocks.0.q_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected: foo.bar"), std::string::npos) << msg;
  }
  NamedTensors wrong_shape;
  for (const auto& [n, t] : model_state(*model))
    wrong_shape.emplace_back(n, n == "item_embedding.weight" ? torch::zeros({5, 16}) : t.clone());
  ASSERT_THROWS_WITH(load_state_into(*model, wrong_shape, "x"), "tensor 'item_embedding.weight': expected shape");
}

TEST_F(TrainerTest, ShortTrainingLowersLossAndBeatsMostPop) {
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 12, st);
  auto model = build(kModelYaml, s.context);
  const double before = mean_loss(*model, st, s.train.loss);
  Trainer trainer(model, st, s);
  TrainSummary summary = trainer.fit(false);
  EXPECT_EQ(summary.epochs_run, 12);
  EXPECT_GE(summary.best_epoch, 1);
  const double after = mean_loss(*model, st, s.train.loss);
  std::cerr << "[trainer] loss before " << before << " after " << after << "\n";
  EXPECT_LT(after, before * 0.8) << "before " << before << " after " << after;
  EXPECT_TRUE(std::filesystem::exists(out.file("best.safetensors")));
  EXPECT_TRUE(std::filesystem::exists(out.file("last.safetensors")));
  EXPECT_TRUE(std::filesystem::exists(out.file("metrics.jsonl")));

  auto pop = build("name: most_pop\n", s.context);
  for (auto split : {data::Split::kValid, data::Split::kTest}) {
    auto mine = eval::evaluate(*model, st, split, s.eval, kMaxLen);
    auto base = eval::evaluate(*pop, st, split, s.eval, kMaxLen);
    EXPECT_EQ(mine.users, base.users);
    std::cerr << "[trainer] " << data::split_name(split) << " hr@10: sasrec " << mine.metrics.at("hr@10")
              << " most_pop " << base.metrics.at("hr@10") << "\n";
    EXPECT_GT(mine.metrics.at("hr@10"), base.metrics.at("hr@10") + 0.1)
        << data::split_name(split) << ": sasrec " << mine.metrics.at("hr@10") << " most_pop "
        << base.metrics.at("hr@10");
  }
  // The summary's test metrics are those of the best checkpoint (now loaded in `model`).
  auto test = eval::evaluate(*model, st, data::Split::kTest, s.eval, kMaxLen);
  EXPECT_DOUBLE_EQ(summary.test.at("hr@10"), test.metrics.at("hr@10"));
  EXPECT_DOUBLE_EQ(summary.best_metric, eval::evaluate(*model, st, data::Split::kValid, s.eval, kMaxLen).metrics.at("hr@10"));
}

// train.grad_accum_steps: 4 batches of 8 per optimiser step leave the weights (and moments) of
// batches of 32, over a whole epoch of 7 steps. Softmax loss and no dropout: nothing random differs
// between the two runs (sampled negatives are drawn per batch, so they would).
TEST_F(TrainerTest, GradientAccumulationOfFourBatchesEqualsOneBatchOfFourTimesTheSize) {
  auto st = store();
  const char* yaml = "name: sasrec\nvariant: gr\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\ndropout: 0.0\n";
  NamedTensors weights[2], moments[2];
  for (int run = 0; run < 2; ++run) {
    TempDir out;
    auto s = setup(out.path(), 1, st);
    s.train.loss.name = config::LossName::kSoftmax;
    s.train.loss.temperature = 0.1;
    s.train.batch_size = run == 0 ? 32 : 8;
    s.train.grad_accum_steps = run == 0 ? 1 : 4;
    s.train.clip_norm = 1.0;  // clipping sees the accumulated gradient
    // AdamW divides each coordinate by its own gradient scale: where the exact gradient is 0 (the
    // key bias, to which softmax attention is invariant) the two runs' different rounding noise
    // (~1e-9) would become steps of up to lr. eps 1e-6 keeps that below 1e-5 per step.
    s.train.eps = 1e-6;
    auto model = build(yaml, s.context);
    Trainer(model, st, s).fit(false);
    NamedTensors opt;
    const TrainCounters c = load_train_state(out.file("last.state.safetensors"), *model, &opt);
    EXPECT_EQ(c.step, 7) << "run " << run;  // 200 users: ceil(200 / 32) = 7 = ceil(ceil(200 / 8) / 4)
    weights[run] = load_tensors(out.file("last.safetensors"), nullptr);
    moments[run] = opt;
  }
  ASSERT_EQ(weights[0].size(), weights[1].size());
  for (size_t i = 0; i < weights[0].size(); ++i)
    EXPECT_LT((weights[0][i].second - weights[1][i].second).abs().max().item<double>(), 2e-5) << weights[0][i].first;
  ASSERT_EQ(moments[0].size(), moments[1].size());
  for (size_t i = 0; i < moments[0].size(); ++i) {
    const auto& a = moments[0][i].second;
    const double scale = a.abs().max().item<double>();
    EXPECT_LT((a - moments[1][i].second).abs().max().item<double>(), 1e-4 * scale + 1e-12) << moments[0][i].first;
  }
}

TEST_F(TrainerTest, HoldoutOneEvaluatesTestWithoutSelectionAndTestsTheLastModel) {
  // GR's protocol: the validation item is trained on, every evaluation is on the test split, patience
  // stops nothing and the model tested is the last epoch's.
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 4, st);
  s.data.holdout = 1;
  s.context.item_counts = data::train_item_counts(st, 1);
  s.train.eval_every = 1;
  s.train.patience = 1;
  auto model = build(kModelYaml, s.context);
  Trainer trainer(model, st, s);
  TrainSummary summary = trainer.fit(false);
  EXPECT_EQ(summary.epochs_run, 4);
  EXPECT_EQ(summary.best_epoch, 4);

  std::ifstream log(out.file("metrics.jsonl"));
  std::vector<std::string> lines, train_lines;
  for (std::string line; std::getline(log, line);)
    (line.find("\"split\":\"train\"") != std::string::npos ? train_lines : lines).push_back(line);
  // One training line per epoch (mean loss, last learning rate: what `seqrec report` plots).
  ASSERT_EQ(train_lines.size(), 4u);
  EXPECT_EQ(train_lines[0].rfind("{\"epoch\":1,\"split\":\"train\",\"loss\":", 0), 0u) << train_lines[0];
  EXPECT_NE(train_lines[3].find("\"lr\":0.005}"), std::string::npos) << train_lines[3];
  ASSERT_EQ(lines.size(), 5u);  // four evaluations during training, then the final test
  for (const auto& line : lines) {
    EXPECT_NE(line.find("\"split\":\"test\""), std::string::npos) << line;
    EXPECT_EQ(line.find("valid"), std::string::npos) << line;
  }
  expect_same_tensors(load_tensors(out.file("best.safetensors"), nullptr),
                      load_tensors(out.file("last.safetensors"), nullptr));
  auto test = eval::evaluate(*model, st, data::Split::kTest, s.eval, kMaxLen);
  EXPECT_DOUBLE_EQ(summary.test.at("hr@10"), test.metrics.at("hr@10"));
  EXPECT_DOUBLE_EQ(summary.best_metric, test.metrics.at("hr@10"));  // the last evaluation, not a maximum
  EXPECT_NE(lines[3].find("\"epoch\":4"), std::string::npos) << lines[3];
}

TEST_F(TrainerTest, ResumeReproducesAnUninterruptedRun) {
  auto st = store();
  TempDir a, b;
  {
    auto s = setup(a.path(), 2, st);
    Trainer t(build(kModelYaml, s.context), st, s);
    EXPECT_EQ(t.fit(false).epochs_run, 2);
  }
  {
    auto s = setup(b.path(), 1, st);
    Trainer t(build(kModelYaml, s.context), st, s);
    EXPECT_EQ(t.fit(false).epochs_run, 1);
  }
  const auto after_one = load_tensors(b.file("last.safetensors"), nullptr);
  {
    auto s = setup(b.path(), 2, st);
    Trainer t(build(kModelYaml, s.context, /*seed=*/999), st, s);  // init is overwritten by the resume
    EXPECT_EQ(t.fit(true).epochs_run, 2);
  }
  std::map<std::string, std::string> meta_a, meta_b;
  const auto wa = load_tensors(a.file("last.safetensors"), nullptr);
  const auto wb = load_tensors(b.file("last.safetensors"), nullptr);
  ASSERT_FALSE(wa.empty());
  expect_same_tensors(wa, wb);
  expect_same_tensors(load_tensors(a.file("last.state.safetensors"), &meta_a),
                      load_tensors(b.file("last.state.safetensors"), &meta_b));
  EXPECT_EQ(meta_a.at("epoch"), "2");
  EXPECT_EQ(meta_a.at("step"), meta_b.at("step"));
  EXPECT_EQ(meta_a.at("epoch"), meta_b.at("epoch"));
  // The second epoch did change the weights (so the equality above is not vacuous).
  bool changed = false;
  std::map<std::string, torch::Tensor> m1(after_one.begin(), after_one.end());
  for (const auto& [n, t] : wb) changed |= !torch::equal(t, m1.at(n));
  EXPECT_TRUE(changed);
}

}  // namespace
}  // namespace seqrec::train

namespace seqrec::train {
namespace {

// Issue 21, defect 3: a run killed between writing last.safetensors and its optimizer state resumed
// from epoch-2 weights with epoch-1 moments. Defect 4: metrics.jsonl kept the lines written after
// the state it resumed from (here the 1-epoch run's test line and a line of a killed epoch 2).
TEST_F(TrainerTest, ResumeAfterAKillBetweenWritesIsExactAndMetricsHaveNoDuplicates) {
  auto st = store();
  TempDir a, b;
  {
    auto s = setup(a.path(), 2, st);
    Trainer(build(kModelYaml, s.context), st, s).fit(false);
  }
  {
    auto s = setup(b.path(), 1, st);
    Trainer(build(kModelYaml, s.context), st, s).fit(false);
  }
  // What a kill at epoch 2 leaves: the new weights already written, then the evaluation line.
  std::filesystem::copy_file(a.file("last.safetensors"), b.file("last.safetensors"),
                             std::filesystem::copy_options::overwrite_existing);
  {
    std::ofstream log(b.file("metrics.jsonl"), std::ios::app);
    log << "{\"epoch\":2,\"split\":\"valid\",\"hr@10\":0.5}\n";
  }
  {
    auto s = setup(b.path(), 2, st);
    Trainer(build(kModelYaml, s.context, /*seed=*/999), st, s).fit(true);
  }
  expect_same_tensors(load_tensors(a.file("last.safetensors"), nullptr),
                      load_tensors(b.file("last.safetensors"), nullptr));
  expect_same_tensors(load_tensors(a.file("best.safetensors"), nullptr),
                      load_tensors(b.file("best.safetensors"), nullptr));
  EXPECT_EQ(read_bytes(b.file("metrics.jsonl")), read_bytes(a.file("metrics.jsonl")));
}

TEST_F(TrainerTest, ResumeRefusesAStateWithoutItsWeights) {
  // seqrec before issue 21 kept the weights and the optimizer state in two files that could come
  // from different epochs; such a pair cannot be checked, so it is refused with the reason.
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 1, st);
  auto model = build(kModelYaml, s.context);
  NamedTensors moments;
  for (const auto& [name, t] : model_state(*model)) moments.emplace_back(name + ".exp_avg", torch::zeros_like(t));
  save_checkpoint(out.file("last.safetensors"), *model, kModelYaml, s.context);
  save_tensors(out.file("last.state.safetensors"), moments, {{"epoch", "1"}, {"step", "7"}});
  Trainer trainer(model, st, s);
  ASSERT_THROWS_WITH(trainer.fit(true), out.file("last.state.safetensors") + ": ");
  ASSERT_THROWS_WITH(Trainer(model, st, s).fit(true), "does not hold the weights");
}

// Issue 21, defect 6: NaN or Inf weights were loaded and scored (NaN scores, exit 0).
TEST_F(TrainerTest, CheckpointWithNonFiniteWeightsIsRefused) {
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 1, st);
  auto model = build(kModelYaml, s.context);
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["item_embedding.weight"][3][1] = std::numeric_limits<float>::quiet_NaN();
  }
  save_checkpoint(out.file("nan.safetensors"), *model, kModelYaml, s.context);
  ASSERT_THROWS_WITH(load_checkpoint(out.file("nan.safetensors")), "tensor 'item_embedding.weight'");
  ASSERT_THROWS_WITH(load_checkpoint(out.file("nan.safetensors")), "1 NaN or infinite value");
}

// Issue 21, defect 7: 100000 negatives on a 500-item catalogue took 11.8 GB before failing.
TEST_F(TrainerTest, MoreNegativesThanItemsIsAConfigError) {
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 1, st);
  s.train.loss.num_negatives = st.num_items() + 1;
  Trainer trainer(build(kModelYaml, s.context), st, s);
  ASSERT_THROWS_WITH(trainer.fit(false), "train.loss.num_negatives: " + std::to_string(st.num_items() + 1) +
                                             " negatives per position, but the catalogue has " +
                                             std::to_string(st.num_items()) + " items");
}

// Issue 21, defect 11: a store where no user has enough events trained 0 steps, exit 0.
TEST_F(TrainerTest, NothingToTrainOnIsADataError) {
  TempDir dir;
  std::ofstream(dir.file("three.txt")) << "1 1\n1 2\n1 3\n2 1\n2 3\n2 2\n";
  data::PrepareOptions p;
  p.input = dir.file("three.txt");
  p.format = data::InputFormat::kSasrecPairs;
  p.output = dir.file("data");
  data::prepare(p);
  auto st = data::InteractionStore::open(dir.file("data/interactions.bin"));
  auto s = setup(dir.file("run"), 1, st);
  s.data.dir = dir.file("data");
  s.train.loss.num_negatives = 2;
  Trainer trainer(build(kModelYaml, s.context), st, s);
  ASSERT_THROWS_WITH(trainer.fit(false), dir.file("data") + ": nothing to train on");
}

// data.train_feat_max_length: the trainer reads its samples from the rows it is given. Rows equal
// to the store's training parts train exactly as the store does (same samples, same batches, same
// loss); rows of one item each leave nothing to train on.
TEST_F(TrainerTest, TrainRowsReplaceTheStoresTrainingParts) {
  auto st = store();
  auto fit = [&](const std::string& out, std::optional<data::InteractionStore> rows) {
    auto s = setup(out, 1, st);
    Trainer trainer(build(kModelYaml, s.context), st, s);
    if (rows) trainer.set_train_rows(*rows);
    return trainer.fit(false).final_loss;
  };
  TempDir a, b, c;
  const double plain = fit(a.path(), std::nullopt);
  EXPECT_EQ(fit(b.path(), data::train_rows(st, 2, 1000, 0, 0)), plain);
  // The last 3 training items only: other samples, another loss.
  EXPECT_NE(fit(c.path(), data::train_rows(st, 2, 3, 0, 0)), plain);
  auto s = setup(a.file("one"), 1, st);
  Trainer one(build(kModelYaml, s.context), st, s);
  one.set_train_rows(data::train_rows(st, 2, 1000, -1, 0));
  ASSERT_THROWS_WITH(one.fit(false), "nothing to train on");
  data::StoreData other;
  other.num_items = st.num_items();
  other.user_offsets = {0, 2};
  other.item_ids = {1, 2};
  ASSERT_THROWS_WITH(one.set_train_rows(data::InteractionStore::from_data(other)),
                     "training rows (1 users, " + std::to_string(st.num_items()) + " items) do not match the store");
}

// Issue 21, defect 9: an invalid model config inside a checkpoint did not name the checkpoint.
TEST_F(TrainerTest, BadModelConfigInACheckpointNamesTheCheckpoint) {
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 1, st);
  auto model = build(kModelYaml, s.context);
  save_checkpoint(out.file("bad.safetensors"), *model, "name: sasrec\nhidden_dim: 16\nnum_heads: 3\n", s.context);
  ASSERT_THROWS_WITH(load_checkpoint(out.file("bad.safetensors")),
                     out.file("bad.safetensors") + ": the model config stored in this checkpoint is invalid: ");
}

// A sharded resume state: the shards it names must exist and carry its epoch and step.
TEST_F(TrainerTest, OptimizerShardsOfAnotherEpochOrMissingAreRefusedByName) {
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 1, st);
  auto model = build(kModelYaml, s.context);
  NamedTensors moments = {{"w.exp_avg", torch::ones({2})}, {"w.exp_avg_sq", torch::full({2}, 2.0f)}};
  save_optimizer_shard(out.file(optimizer_shard_name(3, 0, 2)), {moments[0]}, 3, 30);
  save_optimizer_shard(out.file(optimizer_shard_name(3, 1, 2)), {moments[1]}, 2, 20);  // a stale epoch
  TrainCounters c;
  c.epoch = 3;
  c.step = 30;
  c.optimizer_shards = {optimizer_shard_name(3, 0, 2)};
  save_train_state(out.file("last.state.safetensors"), *model, {}, c);
  NamedTensors ignored;
  TrainCounters back = load_train_state(out.file("last.state.safetensors"), *model, &ignored);
  EXPECT_EQ(back.optimizer_shards, c.optimizer_shards);
  auto all = [](const std::string&) { return true; };
  auto got = load_optimizer_shards(out.path(), "state", back, all);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, "w.exp_avg");
  back.optimizer_shards.push_back(optimizer_shard_name(3, 1, 2));
  ASSERT_THROWS_WITH(load_optimizer_shards(out.path(), "state", back, all),
                     "last.state.e3.rank1-of-2.safetensors: holds the optimizer state of epoch 2 step 20, but state "
                     "is epoch 3 step 30");
  back.optimizer_shards.back() = optimizer_shard_name(3, 5, 6);
  ASSERT_THROWS_WITH(load_optimizer_shards(out.path(), "state", back, all),
                     "last.state.e3.rank5-of-6.safetensors: optimizer shard named by state is missing");
  // Shards of another state (finetune's "<out_dir>.resume"), and a file of a shard's name seqrec did
  // not write, are not this state's to remove.
  write_file_atomic(out.file(optimizer_shard_name(1, 0, 2)), "a user's file");
  const std::string other = optimizer_shard_name(3, 0, 2, "ft.resume");
  EXPECT_EQ(other, "ft.resume.e3.rank0-of-2.safetensors");
  save_optimizer_shard(out.file(other), {moments[0]}, 3, 30);
  remove_other_optimizer_shards(out.path(), {optimizer_shard_name(3, 0, 2)});
  EXPECT_TRUE(std::filesystem::exists(out.file(optimizer_shard_name(3, 0, 2))));
  EXPECT_FALSE(std::filesystem::exists(out.file(optimizer_shard_name(3, 1, 2))));
  EXPECT_TRUE(std::filesystem::exists(out.file("last.state.safetensors")));
  EXPECT_EQ(read_file(out.file(optimizer_shard_name(1, 0, 2))), "a user's file");
  EXPECT_TRUE(std::filesystem::exists(out.file(other)));
  remove_other_optimizer_shards(out.path(), {}, "ft.resume");
  EXPECT_FALSE(std::filesystem::exists(out.file(other)));
  EXPECT_TRUE(std::filesystem::exists(out.file(optimizer_shard_name(3, 0, 2))));
}

TEST(TrainerOptionsTest, AccumulationAndZeroStageAreChecked) {
  auto read = [](const std::string& yaml) {
    return config::read_train_options(config::ConfigNode::parse("train:\n" + yaml).child("train"));
  };
  EXPECT_EQ(read("  grad_accum_steps: 4\n  zero_stage: 2\n").zero_stage, 2);
  ASSERT_THROWS_WITH(read("  grad_accum_steps: 0\n"), "train.grad_accum_steps");
  EXPECT_EQ(read("  zero_stage: 3\n").zero_stage, 3);
  ASSERT_THROWS_WITH(read("  zero_stage: 4\n"), "train.zero_stage: must be 0, 1, 2 or 3");
  ASSERT_THROWS_WITH(read("  zero_state: flat\n"), "train.zero_state: 'flat' is not one of: sharded, consolidated");
  EXPECT_EQ(read("").zero_state, config::ZeroState::kSharded);
  EXPECT_EQ(read("  zero_state: consolidated\n").zero_state, config::ZeroState::kConsolidated);
  EXPECT_TRUE(read("").zero_prefetch);
  EXPECT_FALSE(read("  zero_prefetch: false\n").zero_prefetch);
  EXPECT_DOUBLE_EQ(read("  warmup_min_ratio: 0.01\n").warmup_min_ratio, 0.01);
  EXPECT_DOUBLE_EQ(read("").warmup_min_ratio, 0.0);
  ASSERT_THROWS_WITH(read("  warmup_min_ratio: 1.5\n"), "train.warmup_min_ratio: must be in [0, 1]");
}

TEST(TrainerOptionsTest, GenerationConstraintIsParsedOnceAndSpeltBack) {
  auto read = [](const std::string& yaml) {
    return config::read_eval_options(config::ConfigNode::parse("eval:\n" + yaml).child("eval"));
  };
  EXPECT_EQ(read("").constraint, config::GenerationConstraint::kTrie);
  EXPECT_EQ(read("  constraint: whitelist\n").constraint, config::GenerationConstraint::kWhitelist);
  ASSERT_THROWS_WITH(read("  constraint: prefix\n"), "eval.constraint: 'prefix' is not one of: trie, whitelist");
  EXPECT_EQ(config::name(config::GenerationConstraint::kWhitelist), "whitelist");
  EXPECT_EQ(config::name(config::ZeroState::kConsolidated), "consolidated");
  EXPECT_EQ(config::name(config::Precision::kBf16), "bf16");
}

TEST(TrainerDeviceTest, DeviceNamesAreCheckedAndCudaWithoutAGpuIsAConfigError) {
  EXPECT_TRUE(resolve_device("cpu", 3).is_cpu());
  ASSERT_THROWS_WITH(config::read_train_options(config::ConfigNode::parse("train:\n  device: gpu\n").child("train")),
                     "train.device: 'gpu' is not one of: cpu, cuda, cuda:N");
  if (!torch::cuda::is_available()) {
    ASSERT_THROWS_WITH(resolve_device("cuda", 0), "train.device: 'cuda' asked for, but this LibTorch has no CUDA");
  } else {
    EXPECT_EQ(resolve_device("cuda", 0), torch::Device(torch::kCUDA, 0));
    ASSERT_THROWS_WITH(resolve_device("cuda:99", 0), "cuda:99 does not exist");
  }
}

TEST_F(TrainerTest, TrainsAndEvaluatesOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto st = store();
  TempDir out;
  auto s = setup(out.path(), 3, st);
  s.train.device = "cuda";
  auto model = build(kModelYaml, s.context);
  Trainer trainer(model, st, s);
  TrainSummary summary = trainer.fit(false);
  EXPECT_TRUE(model->parameters().front().is_cuda());
  EXPECT_GT(summary.test.at("hr@10"), 0.0);
  // The checkpoint is device-free: it loads and evaluates on the CPU to the same numbers.
  auto loaded = load_checkpoint(out.file("best.safetensors"));
  auto cpu = eval::evaluate(*loaded.model, st, data::Split::kTest, s.eval, kMaxLen);
  EXPECT_NEAR(cpu.metrics.at("hr@10"), summary.test.at("hr@10"), 1e-9);
}

}  // namespace
}  // namespace seqrec::train
