// Where this process sits in a data-parallel job, read from the environment as torchrun (and
// `seqrec launch`) or Slurm's srun set it. No torch: the launcher and the CLI use it too.
//
// Variables (torchrun names first, Slurm fallbacks second):
//   WORLD_SIZE  | SLURM_STEP_NUM_TASKS, SLURM_NTASKS     number of processes in the job
//   RANK        | SLURM_PROCID                           this process, 0..WORLD_SIZE-1
//   LOCAL_RANK  | SLURM_LOCALID                          this process on its machine (picks the GPU)
//   LOCAL_WORLD_SIZE | SLURM_STEP_TASKS_PER_NODE, SLURM_NTASKS_PER_NODE   processes on this machine
//   MASTER_ADDR | first host of SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST)   rank 0's store host
//   MASTER_PORT | 10000 + SLURM_JOB_ID % 20000             its TCP port
// Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) the agent already serves the store at
// MASTER_ADDR:MASTER_PORT, so every rank connects as a client, with keys under the restart count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace seqrec::dist {

/// The rendezvous coordinates of one process.
struct DistEnv {
  int64_t world_size = 1;        ///< processes in the job
  int64_t rank = 0;              ///< this process, 0..world_size-1
  int64_t local_rank = 0;        ///< this process on its machine (GPU index on CUDA machines)
  int64_t local_world_size = 1;  ///< processes on this machine
  std::string master_addr;       ///< host of rank 0's TCP store
  int64_t master_port = 0;       ///< its port
  bool agent_store = false;      ///< torchrun's agent serves the store: rank 0 does not
  int64_t restart_count = 0;     ///< TORCHELASTIC_RESTART_COUNT (keys of a restarted attempt differ)
};

/// Looks a variable up; returns nullptr when it is unset (std::getenv's contract).
using EnvLookup = std::function<const char*(const char*)>;

/// The process environment.
EnvLookup process_env();

/// Whether the environment describes a job of more than one process: WORLD_SIZE > 1, or an srun
/// step of more than one task (SLURM_STEP_NUM_TASKS > 1; a shell inside an allocation is not one).
bool is_distributed(const EnvLookup& env);

/// Reads and validates the variables above. Throws ConfigError naming the variable when one is
/// missing or malformed (e.g. "RANK: required by WORLD_SIZE=2 but not set (run under seqrec launch,
/// torchrun or srun)").
DistEnv read_dist_env(const EnvLookup& env);

/// First host name of a Slurm node list: "gpu[03-05,9],cpu1" -> "gpu03".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace seqrec::dist
