// Rendezvous variables: torchrun names, Slurm fallbacks, and the errors for missing or bad ones.
#include "seqrec/dist/env.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "support.h"

namespace {

using seqrec::dist::DistEnv;
using seqrec::dist::EnvLookup;

EnvLookup env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(DistEnvTest, ReadsTorchrunVariables) {
  DistEnv d = seqrec::dist::read_dist_env(env_of({{"WORLD_SIZE", "4"}, {"RANK", "3"}, {"LOCAL_RANK", "1"},
                                                  {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node0"},
                                                  {"MASTER_PORT", "29400"}}));
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.rank, 3);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 2);
  EXPECT_EQ(d.master_addr, "node0");
  EXPECT_EQ(d.master_port, 29400);
  EXPECT_TRUE(seqrec::dist::is_distributed(env_of({{"WORLD_SIZE", "4"}})));
  EXPECT_FALSE(seqrec::dist::is_distributed(env_of({{"WORLD_SIZE", "1"}})));
  EXPECT_FALSE(seqrec::dist::is_distributed(env_of({})));
}

TEST(DistEnvTest, UnderTorchrunEveryRankIsAStoreClient) {
  auto vars = std::map<std::string, std::string>{{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"LOCAL_RANK", "0"},
                                                 {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  EXPECT_FALSE(seqrec::dist::read_dist_env(env_of(vars)).agent_store);
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  vars["TORCHELASTIC_RESTART_COUNT"] = "2";
  DistEnv d = seqrec::dist::read_dist_env(env_of(vars));
  EXPECT_TRUE(d.agent_store);
  EXPECT_EQ(d.restart_count, 2);
}

TEST(DistEnvTest, FallsBackToSlurmVariables) {
  DistEnv d = seqrec::dist::read_dist_env(env_of({{"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_NTASKS", "16"},
                                                  {"SLURM_PROCID", "5"}, {"SLURM_LOCALID", "1"},
                                                  {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"},
                                                  {"SLURM_STEP_NODELIST", "gpu[07-08]"},
                                                  {"SLURM_JOB_NODELIST", "gpu[07-08,11],cpu1"},
                                                  {"SLURM_JOB_ID", "123456"}}));
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 4);
  EXPECT_EQ(d.master_addr, "gpu07");
  EXPECT_EQ(d.master_port, 10000 + 123456 % 20000);
  EXPECT_TRUE(seqrec::dist::is_distributed(env_of({{"SLURM_STEP_NUM_TASKS", "8"}})));
  // Inside an allocation but not under srun: one process.
  EXPECT_FALSE(seqrec::dist::is_distributed(env_of({{"SLURM_NTASKS", "8"}, {"SLURM_PROCID", "0"}})));
  d = seqrec::dist::read_dist_env(env_of({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_LOCALID", "0"},
                                          {"SLURM_NODELIST", "n1"}, {"SLURM_JOB_ID", "7"}}));
  EXPECT_EQ(d.world_size, 2);
  EXPECT_EQ(d.master_addr, "n1");
  // torchrun names win over Slurm's when both are set (torchrun inside an allocation).
  d = seqrec::dist::read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"SLURM_NTASKS", "8"}, {"RANK", "1"}, {"LOCAL_RANK", "1"},
                                          {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}));
  EXPECT_EQ(d.world_size, 2);
  EXPECT_EQ(d.local_world_size, 2);
}

TEST(DistEnvTest, FirstSlurmHost) {
  EXPECT_EQ(seqrec::dist::first_slurm_host("node1"), "node1");
  EXPECT_EQ(seqrec::dist::first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(seqrec::dist::first_slurm_host("gpu[003-010]"), "gpu003");
  EXPECT_EQ(seqrec::dist::first_slurm_host("a-b[5,7]"), "a-b5");
  ASSERT_THROWS_WITH(seqrec::dist::first_slurm_host("[1-2]"), "SLURM_JOB_NODELIST: cannot parse");
}

TEST(DistEnvTest, MissingOrBadVariablesAreNamed) {
  using seqrec::dist::read_dist_env;
  ASSERT_THROWS_WITH(read_dist_env(env_of({})), "WORLD_SIZE: not set");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "2"}})), "RANK: required by WORLD_SIZE=2 but not set");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}})),
                     "LOCAL_RANK: required by WORLD_SIZE=2");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"LOCAL_RANK", "0"}})),
                     "MASTER_ADDR: required by WORLD_SIZE=2 but not set");
  ASSERT_THROWS_WITH(
      read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "h"}})),
      "MASTER_PORT: required by WORLD_SIZE=2 but not set");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "two"}})), "WORLD_SIZE: expected an integer in [1,");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"RANK", "2"}})), "RANK: expected an integer in [0, 1]");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "x"}})),
                     "SLURM_PROCID: expected an integer");
  ASSERT_THROWS_WITH(read_dist_env(env_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"LOCAL_RANK", "0"},
                                           {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})),
                     "MASTER_PORT: expected an integer in [1, 65535], got '70000'");
}

}  // namespace
