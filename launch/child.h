#pragma once
// Internal to the launcher (launch/*.cpp): one supervised child process.
#include <sys/types.h>

#include <memory>
#include <string>

#include "launch/launcher.h"
#include "launch/output_relay.h"

namespace openlm::launch::detail {

struct Child {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int wait_status = 0;
  std::unique_ptr<OutputRelay> out, err;
};

/// "rank 1 (local rank 1, pid 42) exited with status 3" / "... was killed by signal 9 (SIGKILL)".
std::string describe_exit(const Child& c);
/// True unless the wait status is a normal exit with status 0.
bool failed(int wait_status);
/// Starts c.local_rank's process (own process group, rank variables set, stdout/stderr piped into
/// prefixed relays to o.out_fd / o.err_fd). Throws IoError when pipe/fork fail.
void spawn(const LaunchOptions& o, const std::string& addr, int port, int restart, Child& c);

}  // namespace openlm::launch::detail
