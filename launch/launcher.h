#pragma once
/// A torchrun-style process supervisor (no LibTorch): starts `nproc_per_node` copies of a command on
/// this node with the rank variables a distributed program reads (see core/dist_env.h), prefixes
/// every output line with the child's rank, forwards SIGINT/SIGTERM (then stops the group) and
/// SIGUSR1/SIGUSR2 (passed through, e.g. a "checkpoint now" request), and when one child fails stops
/// the others (SIGTERM to each child's process group, SIGKILL after a grace period) and either
/// restarts the whole group or reports which rank failed and how.
///
/// Each node of a multi-node job runs its own launcher with the same --nnodes, --master-addr and
/// --master-port and its own --node-rank; ranks are node_rank * nproc_per_node + local_rank.
/// Restarts are per node: a failure on another node reaches this node's ranks as a failed
/// collective, so every node's group fails and restarts in turn.
#include <string>
#include <utility>
#include <vector>

namespace openlm::launch {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// One node, rendezvous on 127.0.0.1 at a free port picked by the launcher (torchrun --standalone).
  bool standalone = false;
  /// Restarts of the whole group after a failure; the program resumes from its latest checkpoint.
  int max_restarts = 0;
  /// Seconds between SIGTERM and SIGKILL when stopping children.
  double stop_grace_s = 5.0;
  /// The program and its arguments (looked up in PATH like a shell).
  std::vector<std::string> command;
  /// Additional variables for every child (set after the rank variables, so they can override).
  std::vector<std::pair<std::string, std::string>> extra_env;
  /// Where children's prefixed stdout / stderr lines go (tests pass files or pipes).
  int out_fd = 1;
  int err_fd = 2;
};

/// How a launch ended.
struct LaunchResult {
  int exit_code = 0;      ///< what the launcher should exit with: 0, the failed child's status, 128+signal
  int failed_rank = -1;   ///< global rank whose failure ended the last attempt (-1: none)
  int failed_status = 0;  ///< its exit status, or the signal number when failed_by_signal
  bool failed_by_signal = false;
  int restarts = 0;          ///< how many times the group was restarted
  int received_signal = 0;   ///< SIGINT/SIGTERM that stopped the launcher (0: none)
  std::string message;       ///< one line describing the failure ("" on success)
};

/// Checks the options; throws ConfigError naming the flag (e.g. "--node-rank") when invalid.
void validate(const LaunchOptions& opts);

/// Runs the group to completion (with restarts). Blocks; installs SIGINT/SIGTERM/SIGCHLD/SIGUSR1/2 handlers
/// for the duration and restores the previous ones. Throws IoError when a child cannot be started
/// (fork/pipe failure); a command that cannot be executed is a child exiting with status 127.
LaunchResult run(const LaunchOptions& opts);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back).
int pick_free_port();

/// "SIGKILL" for 9, "signal 42" for unnamed ones.
std::string signal_name(int sig);

}  // namespace openlm::launch
