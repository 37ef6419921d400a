#pragma once
/// Where this process sits in a multi-process run: its rank, the world size, its place on the node,
/// and where the rendezvous (TCPStore) lives. Read from the environment that one of the supported
/// launchers sets, so `openlm train` runs unchanged under
///   - `openlm launch` and `torchrun --no-python`: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
///     GROUP_RANK, MASTER_ADDR, MASTER_PORT (TORCHELASTIC_RESTART_COUNT for restarts);
///   - Slurm `srun`: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID,
///     SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE, master = MASTER_ADDR or the first host of
///     SLURM_JOB_NODELIST (bracket ranges like `node[01-04,07]` are expanded);
///   - Open MPI `mpirun`: OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE.
/// Torch-free, so the launcher and tools can use it too.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace openlm {

/// Rank and rendezvous information of this process. A default-constructed DistEnv is a
/// single-process run (rank 0 of 1).
struct DistEnv {
  int rank = 0;              ///< global rank in [0, world_size)
  int world_size = 1;
  int local_rank = 0;        ///< rank on this node in [0, local_world_size)
  int local_world_size = 1;  ///< processes on this node
  int node_rank = 0;         ///< GROUP_RANK / SLURM_NODEID: which node (0-based)
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's TCPStore
  int master_port = 29500;
  int restart_count = 0;     ///< how often the launcher restarted the group (0 on the first run)
  std::string source = "single";  ///< single | torchrun | slurm | mpirun: which variables were used

  bool distributed() const { return world_size > 1; }
  /// One line for logs: "rank 3/8 (local 3/4, node 0) via torchrun, master 10.0.0.1:29500".
  std::string describe() const;
};

/// Looks a variable up; returns nullptr when unset (like std::getenv).
using EnvLookup = std::function<const char*(const char*)>;

/// Detects the run's layout from the process environment. Precedence: RANK+WORLD_SIZE (our
/// launcher / torchrun), then SLURM_PROCID+SLURM_NTASKS, then OMPI_COMM_WORLD_RANK+SIZE, else a
/// single process. Throws ConfigError naming the variable when a value is malformed or out of
/// range (e.g. RANK >= WORLD_SIZE), or when a multi-node run has no way to find its master.
DistEnv detect_dist_env();
/// Same, reading variables through `lookup` (tests pass a map).
DistEnv detect_dist_env(const EnvLookup& lookup);
/// Convenience for tests: look variables up in a map.
DistEnv detect_dist_env(const std::map<std::string, std::string>& vars);

/// Expands a Slurm host list ("node[01-04,07],gpu-a[1-2]-x") into host names in order, keeping
/// zero padding ("node01"). Several bracket groups in one name expand as a cartesian product.
/// Throws ConfigError on malformed input or when more than `max_hosts` names would result.
std::vector<std::string> expand_nodelist(const std::string& nodelist, size_t max_hosts = 1 << 20);
/// First host of a Slurm host list without expanding the rest ("node[01-04]" -> "node01").
std::string first_host_of_nodelist(const std::string& nodelist);

}  // namespace openlm
