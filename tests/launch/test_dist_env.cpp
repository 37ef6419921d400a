// Rank/world detection from the variables torchrun (and our launcher), Slurm and mpirun set.
#include <gtest/gtest.h>

#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/core/error.h"

using openlm::ConfigError;
using openlm::detect_dist_env;
using openlm::DistEnv;
using Vars = std::map<std::string, std::string>;

static std::string error_of(const Vars& v) {
  try {
    detect_dist_env(v);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(DistEnv, NothingSetIsSingleProcess) {
  DistEnv e = detect_dist_env(Vars{});
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_FALSE(e.distributed());
  EXPECT_EQ(e.source, "single");
}

TEST(DistEnv, Torchrun) {
  DistEnv e = detect_dist_env(Vars{{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                                   {"LOCAL_WORLD_SIZE", "4"}, {"GROUP_RANK", "1"},
                                   {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "29555"},
                                   {"TORCHELASTIC_RESTART_COUNT", "2"},
                                   // lower-precedence launchers' variables are ignored
                                   {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}});
  EXPECT_EQ(e.source, "torchrun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.node_rank, 1);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 29555);
  EXPECT_EQ(e.restart_count, 2);
  EXPECT_TRUE(e.distributed());
  EXPECT_NE(e.describe().find("rank 5/8"), std::string::npos);
}

TEST(DistEnv, TorchrunSingleNodeDefaults) {
  DistEnv e = detect_dist_env(Vars{{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.node_rank, 0);
  EXPECT_EQ(e.master_addr, "127.0.0.1");
  EXPECT_EQ(e.master_port, 29500);
}

TEST(DistEnv, TorchrunErrorsNameTheVariable) {
  EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("'RANK'"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("'x' is not an integer"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}})
                .find("LOCAL_RANK"),
            std::string::npos);
  // two nodes, nowhere to meet
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}}).find("MASTER_ADDR"),
            std::string::npos);
}

TEST(DistEnv, SlurmWithNodelist) {
  DistEnv e = detect_dist_env(Vars{{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "2"},
                                   {"SLURM_NODEID", "1"}, {"SLURM_TASKS_PER_NODE", "4(x2)"},
                                   {"SLURM_JOB_NODELIST", "gpu-node[07-08,11],login1"},
                                   {"SLURM_RESTART_COUNT", "1"}});
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 6);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 2);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.node_rank, 1);
  EXPECT_EQ(e.master_addr, "gpu-node07");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_EQ(e.restart_count, 1);
}

TEST(DistEnv, SlurmUnevenTasksAndMasterOverride) {
  Vars v{{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "5"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "2"},
         {"SLURM_TASKS_PER_NODE", "2(x2),1"}, {"SLURM_JOB_NODELIST", "n[1-3]"},
         {"MASTER_ADDR", "head"}, {"MASTER_PORT", "12345"}};
  DistEnv e = detect_dist_env(v);
  EXPECT_EQ(e.local_world_size, 1);
  EXPECT_EQ(e.master_addr, "head");
  EXPECT_EQ(e.master_port, 12345);
  v["SLURM_NTASKS_PER_NODE"] = "2";  // a plain count wins over the per-node list
  v["SLURM_NODEID"] = "0";
  v["SLURM_PROCID"] = "1";
  v["SLURM_LOCALID"] = "1";
  EXPECT_EQ(detect_dist_env(v).local_world_size, 2);
}

TEST(DistEnv, SlurmErrors) {
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_NNODES", "2"}}).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_TASKS_PER_NODE", "2"},
                      {"SLURM_JOB_NODELIST", "n[1-2"}})
                .find("SLURM_JOB_NODELIST"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_NODEID", "3"},
                      {"SLURM_TASKS_PER_NODE", "2(x2)"}, {"SLURM_JOB_NODELIST", "n1"}})
                .find("SLURM_TASKS_PER_NODE"),
            std::string::npos);
}

TEST(DistEnv, Mpirun) {
  DistEnv e = detect_dist_env(Vars{{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                   {"MASTER_ADDR", "node0"}});
  EXPECT_EQ(e.source, "mpirun");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.node_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  // single node: localhost is fine without MASTER_ADDR; multi-node is not
  DistEnv s = detect_dist_env(Vars{{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_EQ(s.master_addr, "127.0.0.1");
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}})
                .find("MASTER_ADDR"),
            std::string::npos);
}

TEST(Nodelist, FirstHost) {
  EXPECT_EQ(openlm::first_host_of_nodelist("node[01-04,07]"), "node01");
  EXPECT_EQ(openlm::first_host_of_nodelist("node7"), "node7");
  EXPECT_EQ(openlm::first_host_of_nodelist("a[3,1-2]-b[09-10],c1"), "a3-b09");
  EXPECT_EQ(openlm::first_host_of_nodelist("gpu[8-12]"), "gpu8");
  EXPECT_THROW(openlm::first_host_of_nodelist("node[01-"), ConfigError);
  EXPECT_THROW(openlm::first_host_of_nodelist(""), ConfigError);
  EXPECT_THROW(openlm::first_host_of_nodelist("node]"), ConfigError);
}

TEST(Nodelist, Expand) {
  using V = std::vector<std::string>;
  EXPECT_EQ(openlm::expand_nodelist("node[01-04,07]"), (V{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(openlm::expand_nodelist("n[8-10],login"), (V{"n8", "n9", "n10", "login"}));
  EXPECT_EQ(openlm::expand_nodelist("r[1-2]-n[1,3]"), (V{"r1-n1", "r1-n3", "r2-n1", "r2-n3"}));
  EXPECT_EQ(openlm::expand_nodelist("x[098-101]"), (V{"x098", "x099", "x100", "x101"}));
  EXPECT_THROW(openlm::expand_nodelist("n[5-3]"), ConfigError);
  EXPECT_THROW(openlm::expand_nodelist("n[1-2]],m"), ConfigError);
  EXPECT_THROW(openlm::expand_nodelist("a,,b"), ConfigError);
  EXPECT_THROW(openlm::expand_nodelist("n[[1]]"), ConfigError);
  EXPECT_THROW(openlm::expand_nodelist("n[0-99999999]", 1000), ConfigError);
  EXPECT_THROW(openlm::expand_nodelist("a[0-99]b[0-99]", 1000), ConfigError);
}
