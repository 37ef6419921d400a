// `openlm launch`: torchrun-compatible process launcher (launch/launcher.h).
//   openlm launch --nproc-per-node 4 [--nnodes 2 --node-rank 0 --master-addr h --master-port p]
//                 [--standalone] [--max-restarts K] -- openlm train --config recipe.yaml
// Exits 0 when every rank succeeded, else with the failed rank's exit status (128+signal when it
// was killed) after logging which rank failed and how.
#include <memory>

#include "launch/launcher.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/log.h"

namespace {

struct LaunchArgs {
  openlm::launch::LaunchOptions opts;
  std::vector<std::string> command;
};

openlm::cli::Registrar reg("launch", [](CLI::App& root) {
  auto args = std::make_shared<LaunchArgs>();
  auto* sub = root.add_subcommand(
      "launch", "Run N copies of a command with RANK/WORLD_SIZE/... set (like torchrun --no-python)");
  auto& o = args->opts;
  sub->add_option("--nproc-per-node,--nproc_per_node", o.nproc_per_node, "processes on this node")
      ->required();
  sub->add_option("--nnodes", o.nnodes, "number of nodes")->capture_default_str();
  sub->add_option("--node-rank,--node_rank", o.node_rank, "this node's index")->capture_default_str();
  sub->add_option("--master-addr,--master_addr", o.master_addr, "host of rank 0")->capture_default_str();
  sub->add_option("--master-port,--master_port", o.master_port, "TCPStore port on the master")
      ->capture_default_str();
  sub->add_flag("--standalone", o.standalone, "single node: rendezvous on 127.0.0.1 at a free port");
  sub->add_option("--max-restarts,--max_restarts", o.max_restarts,
                  "restart the whole group this many times after a failure")
      ->capture_default_str();
  sub->add_option("--stop-grace", o.stop_grace_s, "seconds between the stop signal (SIGTERM, or the first SIGINT) and SIGKILL when stopping ranks")
      ->capture_default_str();
  sub->add_option("command", args->command, "the program and its arguments (after --)");
  sub->positionals_at_end(true);
  sub->callback([args] {
    args->opts.command = args->command;
    openlm::launch::LaunchResult r = openlm::launch::run(args->opts);
    if (r.exit_code != 0) {
      openlm::log::error("{}", r.message);
      throw CLI::RuntimeError(r.exit_code);
    }
  });
});

}  // namespace
