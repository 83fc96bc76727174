// Writing LC-Rec examples as JSONL (`seqrec lcrec-data`), the input of `seqrec finetune`.
//
// Every line is one JSON object:
//   {"prompt": "<Alpaca text up to and including ### Response:>", "response": "<supervised text>",
//    "task": "seqrec", "template": 3, "user": 17, "target_item": 42}
// "user" is the dense user index (null for item2index / index2item), "target_item" the dense item
// the response is about (null for preferenceobtain). The fine-tuning side appends EOS to the
// response and supervises only the response tokens (upstream --only_train_response).
//
// Files in out_dir:
//   train.jsonl            training examples of epoch 0 (templates drawn for epoch 0)
//   train_epoch<e>.jsonl   epoch e = 1..epochs-1 when epochs > 1 (fresh templates, same samples)
//   valid.jsonl            seqrec validation examples (target items[-2])
//   test.jsonl             test prompts and targets (test_task, every template of test_prompt_ids)
//   config.yaml            the resolved config of the run (when given)
//   lcrec_data.json        what was written: files and line counts, per-task reports
// Each file is written to a temp name and renamed. An existing out_dir is written into only when
// it is empty or holds a lcrec_data.json (written by an earlier run); files that an earlier run
// listed and this one does not write (e.g. train_epoch3.jsonl after lowering epochs) are removed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/lcrec_tasks.h"

namespace seqrec::data {

/// Marker file naming what lcrec-data wrote into its out_dir.
constexpr const char* kLcRecDataMarker = "lcrec_data.json";

/// Where the examples go.
struct LcRecOutputOptions {
  std::string out_dir;  ///< output directory (created)
  int64_t epochs = 1;   ///< training epochs to materialise (>= 1)
  std::string config_yaml;  ///< the resolved config, written as config.yaml when not empty
};

/// One JSONL line (no newline); invalid UTF-8 in texts is replaced by U+FFFD.
std::string lcrec_example_json(const LcRecExample& example);

/// The training file of `epoch`: "train.jsonl" for 0, else "train_epoch<e>.jsonl".
std::string lcrec_train_file(int64_t epoch);

/// A written file and its number of lines.
struct LcRecFileReport {
  std::string name;   ///< file name inside out_dir
  int64_t lines = 0;  ///< examples written
};

/// Writes every file listed in the header comment; throws Error when out_dir holds files seqrec
/// did not write, or on I/O failure (naming the path).
std::vector<LcRecFileReport> write_lcrec_data(const LcRecTaskSet& set, const LcRecOutputOptions& out);

}  // namespace seqrec::data
