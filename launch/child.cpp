// Starting one rank: its environment, pipes, process group and exec.
#include "launch/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "openlm_cpp/core/error.h"

extern char** environ;

namespace openlm::launch::detail {
namespace {

/// Environment block for one child: the launcher's environment with the rank variables replaced.
std::vector<std::string> child_env(const LaunchOptions& o, const std::string& addr, int port,
                                   int local_rank, int restart) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq) vars[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
  }
  int world = o.nproc_per_node * o.nnodes;
  int rank = o.node_rank * o.nproc_per_node + local_rank;
  vars["RANK"] = std::to_string(rank);
  vars["LOCAL_RANK"] = std::to_string(local_rank);
  vars["WORLD_SIZE"] = std::to_string(world);
  vars["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc_per_node);
  vars["GROUP_RANK"] = std::to_string(o.node_rank);
  vars["ROLE_RANK"] = std::to_string(rank);
  vars["ROLE_WORLD_SIZE"] = std::to_string(world);
  vars["MASTER_ADDR"] = addr;
  vars["MASTER_PORT"] = std::to_string(port);
  vars["TORCHELASTIC_RESTART_COUNT"] = std::to_string(restart);
  vars["TORCHELASTIC_MAX_RESTARTS"] = std::to_string(o.max_restarts);
  // Like torchrun: several ranks on one node each spinning up all cores' threads oversubscribe.
  if (o.nproc_per_node > 1 && !vars.count("OMP_NUM_THREADS")) vars["OMP_NUM_THREADS"] = "1";
  for (const auto& [k, v] : o.extra_env) vars[k] = v;
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

std::string describe_exit(const Child& c) {
  if (WIFSIGNALED(c.wait_status))
    return fmt::format("rank {} (local rank {}, pid {}) was killed by signal {} ({})", c.rank,
                       c.local_rank, c.pid, WTERMSIG(c.wait_status), signal_name(WTERMSIG(c.wait_status)));
  return fmt::format("rank {} (local rank {}, pid {}) exited with status {}", c.rank, c.local_rank,
                     c.pid, WEXITSTATUS(c.wait_status));
}

bool failed(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

void spawn(const LaunchOptions& o, const std::string& addr, int port, int restart, Child& c) {
  std::vector<std::string> env = child_env(o, addr, port, c.local_rank, restart);
  std::vector<char*> envp, argv;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.command;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string exec_fail = fmt::format("openlm launch: cannot execute '{}'\n", o.command[0]);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("cannot create", "stdout pipe");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw_errno("cannot create", "stderr pipe");
  }
  pid_t parent = ::getpid();
  // Block our handled signals across fork: the child must not run the launcher's handlers (they
  // would write into the launcher's signal pipe) before it resets them to the defaults.
  sigset_t block, saved;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGCHLD);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGUSR2);
  ::sigprocmask(SIG_BLOCK, &block, &saved);
  pid_t pid = ::fork();
  if (pid != 0) ::sigprocmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) throw_errno("cannot fork for rank " + std::to_string(c.rank), o.command[0]);
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    ::setpgid(0, 0);                      // own group: stopping it reaches grandchildren too
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // a SIGKILLed launcher leaves no orphans
    if (::getppid() != parent) ::_exit(126);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGCHLD, &dfl, nullptr);
    ::sigaction(SIGUSR1, &dfl, nullptr);
    ::sigaction(SIGUSR2, &dfl, nullptr);
    ::sigaction(SIGPIPE, &dfl, nullptr);  // ignored dispositions survive exec: restore it
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);  // a background group must not read the tty
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execvpe(argv[0], argv.data(), envp.data());
    (void)!::write(2, exec_fail.data(), exec_fail.size());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so kill(-pid) works before the child ran
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  c.pid = pid;
  c.running = true;
  c.wait_status = 0;
  std::string prefix = fmt::format("[rank{}]: ", c.rank);
  c.out = std::make_unique<OutputRelay>(out_pipe[0], o.out_fd, prefix);
  c.err = std::make_unique<OutputRelay>(err_pipe[0], o.err_fd, prefix);
}

}  // namespace openlm::launch::detail
