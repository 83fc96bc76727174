// seqrec finetune: supervised fine-tuning of a Hugging Face decoder LM on prompt/response JSONL;
// prints one JSON line with what the run did.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/train/finetune.h"

namespace seqrec::cli {

int run_finetune(const CliArgs& args) {
  config::ConfigNode root = config::load_config(args.config_file, args.overrides);
  const train::FinetuneOptions options = train::read_finetune_options(root.child("finetune"));
  ignore_sections(root, "finetune");
  root.finish();
  set_threads(options.threads);
  train::FinetuneInvocation invocation;
  invocation.resume = args.resume;
  invocation.group = join_job(&invocation.local_rank);  // seqrec launch -- finetune: data parallel
  const bool writer = invocation.group == nullptr || invocation.group->rank() == 0;
  log_info("finetune: %s on %s (%s), output %s", options.model_dir.c_str(), options.train_file.c_str(),
           options.lora.enabled ? "LoRA" : "full fine-tuning", options.out_dir.c_str());
  const train::FinetuneSummary s = train::run_finetune(options, root.dump() + "\n", invocation);
  nlohmann::json out = {{"out_dir", options.out_dir},        {"added_tokens", s.added_tokens},
                        {"train_examples", s.train_examples}, {"valid_examples", s.valid_examples},
                        {"steps", s.steps},                   {"train_loss", s.train_loss},
                        {"exported_step", s.exported_step},   {"seconds", s.seconds}};
  if (s.valid_examples > 0) out["best_valid_loss"] = s.best_valid_loss;
  if (writer) std::printf("%s\n", out.dump().c_str());  // rank 0 speaks for the job
  return 0;
}

}  // namespace seqrec::cli
