// Rendezvous variables from the environment (torchrun / seqrec launch, Slurm fallbacks).
#include "seqrec/dist/env.h"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "seqrec/common/error.h"

namespace seqrec::dist {
namespace {

const char* kHint = " (run under `seqrec launch`, torchrun or srun, or set it by hand)";

// The first set variable among `names`, with the name that matched; nullptr when none is set.
const char* lookup(const EnvLookup& env, std::initializer_list<const char*> names, const char** which) {
  for (const char* name : names) {
    const char* v = env(name);
    if (v != nullptr && *v != '\0') {
      *which = name;
      return v;
    }
  }
  return nullptr;
}

int64_t parse_int(const char* name, const char* text, int64_t min, int64_t max) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
    throw ConfigError(name, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                                "], got '" + std::string(text) + "'");
  return v;
}

}  // namespace

EnvLookup process_env() {
  return [](const char* name) { return std::getenv(name); };
}

bool is_distributed(const EnvLookup& env) {
  const char* which = nullptr;
  // SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: the latter is set in the whole allocation, also in a
  // shell where the user means to train in one process; srun sets the former for its tasks only.
  const char* v = lookup(env, {"WORLD_SIZE", "SLURM_STEP_NUM_TASKS"}, &which);
  return v != nullptr && parse_int(which, v, 1, 1 << 20) > 1;
}

DistEnv read_dist_env(const EnvLookup& env) {
  DistEnv d;
  const char* which = nullptr;
  const char* v = lookup(env, {"WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}, &which);
  if (v == nullptr) throw ConfigError("WORLD_SIZE", std::string("not set") + kHint);
  d.world_size = parse_int(which, v, 1, 1 << 20);
  const std::string ws = std::string(which) + "=" + std::to_string(d.world_size);

  v = lookup(env, {"RANK", "SLURM_PROCID"}, &which);
  if (v == nullptr) throw ConfigError("RANK", "required by " + ws + " but not set" + kHint);
  d.rank = parse_int(which, v, 0, d.world_size - 1);

  v = lookup(env, {"LOCAL_RANK", "SLURM_LOCALID"}, &which);
  d.local_rank = v == nullptr ? (d.world_size == 1 ? 0 : -1) : parse_int(which, v, 0, d.world_size - 1);
  if (d.local_rank < 0) throw ConfigError("LOCAL_RANK", "required by " + ws + " but not set" + kHint);

  v = lookup(env, {"LOCAL_WORLD_SIZE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"}, &which);
  // Slurm writes tasks per node as "2", "2(x3)" or "2(x3),1"; the leading count is what we need.
  std::string local_ws = v == nullptr ? "" : std::string(v).substr(0, std::string(v).find('('));
  d.local_world_size = local_ws.empty() ? d.world_size : parse_int(which, local_ws.c_str(), 1, d.world_size);
  if (d.local_rank >= d.local_world_size)
    throw ConfigError("LOCAL_RANK", std::to_string(d.local_rank) + " must be below LOCAL_WORLD_SIZE=" +
                                        std::to_string(d.local_world_size));

  v = lookup(env, {"MASTER_ADDR"}, &which);
  if (v != nullptr) {
    d.master_addr = v;
  } else if ((v = lookup(env, {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}, &which)) != nullptr) {
    d.master_addr = first_slurm_host(v);
  } else {
    throw ConfigError("MASTER_ADDR", "required by " + ws + " but not set" + kHint);
  }

  v = lookup(env, {"MASTER_PORT"}, &which);
  if (v != nullptr) {
    d.master_port = parse_int(which, v, 1, 65535);
  } else if ((v = lookup(env, {"SLURM_JOB_ID"}, &which)) != nullptr) {
    // Same port on every node of the job without coordination (PyTorch Lightning's convention).
    d.master_port = 10000 + parse_int(which, v, 0, INT64_MAX) % 20000;
  } else {
    throw ConfigError("MASTER_PORT", "required by " + ws + " but not set" + kHint);
  }
  if ((v = lookup(env, {"TORCHELASTIC_USE_AGENT_STORE"}, &which)) != nullptr)
    d.agent_store = std::string(v) == "True" || std::string(v) == "true" || std::string(v) == "1";
  if ((v = lookup(env, {"TORCHELASTIC_RESTART_COUNT"}, &which)) != nullptr)
    d.restart_count = parse_int(which, v, 0, INT64_MAX);
  return d;
}

std::string first_slurm_host(const std::string& nodelist) {
  // Grammar: host[ranges](,host[ranges])* where ranges = a(-b)?(,a(-b)?)*; the first host is the
  // prefix of the first entry plus the first number of its first range (zero padding kept).
  std::string prefix;
  size_t i = 0;
  for (; i < nodelist.size() && nodelist[i] != ',' && nodelist[i] != '['; ++i) prefix += nodelist[i];
  if (prefix.empty()) throw ConfigError("SLURM_JOB_NODELIST", "cannot parse '" + nodelist + "'");
  if (i < nodelist.size() && nodelist[i] == '[') {
    std::string first;
    for (++i; i < nodelist.size() && std::isdigit(static_cast<unsigned char>(nodelist[i])); ++i) first += nodelist[i];
    if (first.empty()) throw ConfigError("SLURM_JOB_NODELIST", "cannot parse '" + nodelist + "'");
    prefix += first;
  }
  if (prefix.empty()) throw ConfigError("SLURM_JOB_NODELIST", "cannot parse '" + nodelist + "'");
  return prefix;
}

}  // namespace seqrec::dist
