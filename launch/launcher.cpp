#include "launch/launcher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>

#include "launch/output_relay.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

extern char** environ;

namespace openlm::launch {
namespace {

using Clock = std::chrono::steady_clock;

// Self-pipe: signal handlers write the signal number, the poll loop reads it.
int g_sig_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  if (g_sig_pipe[1] >= 0) (void)!::write(g_sig_pipe[1], &b, 1);
  errno = saved;
}

/// Installs the handlers for one run() and restores the previous ones on destruction.
class SignalScope {
 public:
  SignalScope() {
    if (::pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("cannot create", "signal pipe");
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < kCount; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalScope() {
    for (int i = 0; i < kCount; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
    ::close(g_sig_pipe[0]);
    ::close(g_sig_pipe[1]);
    g_sig_pipe[0] = g_sig_pipe[1] = -1;
  }
  /// Returns SIGINT/SIGTERM if one arrived since the last call (SIGCHLD only wakes the loop);
  /// SIGUSR1/SIGUSR2 (e.g. Slurm's "checkpoint now" warning) go to `passthrough`.
  int drain(std::vector<int>* passthrough = nullptr) {
    unsigned char buf[64];
    int got = 0;
    ssize_t n;
    while ((n = ::read(g_sig_pipe[0], buf, sizeof buf)) > 0)
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == SIGINT || buf[i] == SIGTERM) got = buf[i];
        if ((buf[i] == SIGUSR1 || buf[i] == SIGUSR2) && passthrough) passthrough->push_back(buf[i]);
      }
    return got;
  }
  int fd() const { return g_sig_pipe[0]; }

 private:
  static constexpr int kCount = 5;
  static constexpr int kSignals[kCount] = {SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2};
  struct sigaction old_[kCount];
};

struct Child {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int wait_status = 0;
  std::unique_ptr<OutputRelay> out, err;
};

std::string describe_exit(const Child& c) {
  if (WIFSIGNALED(c.wait_status))
    return fmt::format("rank {} (local rank {}, pid {}) was killed by signal {} ({})", c.rank,
                       c.local_rank, c.pid, WTERMSIG(c.wait_status), signal_name(WTERMSIG(c.wait_status)));
  return fmt::format("rank {} (local rank {}, pid {}) exited with status {}", c.rank, c.local_rank,
                     c.pid, WEXITSTATUS(c.wait_status));
}

bool failed(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

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

/// One attempt: start the group, supervise until all exit, a child fails, or a signal arrives.
class Group {
 public:
  Group(const LaunchOptions& o, SignalScope& sigs) : o_(o), sigs_(sigs) {}

  /// Returns the index of the first failed child (-1: none); sets `signal` when interrupted.
  int run(const std::string& addr, int port, int restart, int& signal) {
    children_.clear();
    children_.resize(static_cast<size_t>(o_.nproc_per_node));
    for (int i = 0; i < o_.nproc_per_node; ++i) {
      Child& c = children_[static_cast<size_t>(i)];
      c.local_rank = i;
      c.rank = o_.node_rank * o_.nproc_per_node + i;
      spawn(o_, addr, port, restart, c);
    }
    int first_failed = -1;
    signal = 0;
    while (any_running()) {
      poll_once(200);
      std::vector<int> passthrough;
      int stop_sig = sigs_.drain(&passthrough);
      for (int s : passthrough) {
        log::info("openlm launch: forwarding {} to {} rank(s)", signal_name(s), count_running());
        for (auto& c : children_)
          if (c.running) ::kill(-c.pid, s);
      }
      if (int s = stop_sig) {
        signal = s;
        log::warn("openlm launch: received {}, forwarding to {} rank(s)", signal_name(s), count_running());
        stop(s);
        break;
      }
      for (size_t i = 0; i < children_.size(); ++i) {
        if (reap(children_[i], false) && failed(children_[i].wait_status) && first_failed < 0) {
          first_failed = static_cast<int>(i);
        }
      }
      if (first_failed >= 0) {
        log::error("openlm launch: {}; stopping the other ranks", describe_exit(children_[static_cast<size_t>(first_failed)]));
        stop(SIGTERM);
        break;
      }
    }
    drain_outputs();
    return first_failed;
  }

  const Child& child(int i) const { return children_[static_cast<size_t>(i)]; }

 private:
  bool any_running() const {
    for (const auto& c : children_)
      if (c.running) return true;
    return false;
  }
  int count_running() const {
    int n = 0;
    for (const auto& c : children_) n += c.running;
    return n;
  }

  /// Waits up to timeout_ms for output or a signal and relays what arrived.
  void poll_once(int timeout_ms) {
    std::vector<pollfd> fds;
    std::vector<OutputRelay*> relays;
    fds.push_back({sigs_.fd(), POLLIN, 0});
    relays.push_back(nullptr);
    for (auto& c : children_)
      for (OutputRelay* r : {c.out.get(), c.err.get()})
        if (r && r->open()) {
          fds.push_back({r->fd(), POLLIN, 0});
          relays.push_back(r);
        }
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0) return;
    for (size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents) relays[i]->pump();
  }

  /// Collects a child that exited. Its process group is SIGKILLed first (while the zombie still
  /// pins the group id) when the child failed or `kill_group` is set, so no grandchild outlives it.
  bool reap(Child& c, bool kill_group) {
    if (!c.running) return false;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid != c.pid)
      return false;
    bool ok = info.si_code == CLD_EXITED && info.si_status == 0;
    if (kill_group || !ok) ::kill(-c.pid, SIGKILL);
    int st = 0;
    while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
    }
    c.running = false;
    c.wait_status = st;
    return true;
  }

  /// Sends `sig` to every running child's process group; SIGKILL whatever is left after the grace.
  void stop(int sig) {
    for (auto& c : children_)
      if (c.running) ::kill(-c.pid, sig);
    auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o_.stop_grace_s * 1000));
    bool killed = false;
    while (any_running()) {
      poll_once(50);
      if (int s = sigs_.drain(); s != 0 && !killed) {  // a second Ctrl-C: no more patience
        deadline = Clock::now();
      }
      for (auto& c : children_) reap(c, true);
      if (!killed && Clock::now() >= deadline && any_running()) {
        log::warn("openlm launch: {} rank(s) still running after {} s; sending SIGKILL", count_running(), o_.stop_grace_s);
        for (auto& c : children_)
          if (c.running) ::kill(-c.pid, SIGKILL);
        killed = true;
      }
    }
  }

  /// Relays the output still buffered in the pipes; gives up after 2 s on pipes held open by
  /// processes that escaped the child's group.
  void drain_outputs() {
    auto deadline = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < deadline) {
      bool open = false;
      for (auto& c : children_) open = open || c.out->open() || c.err->open();
      if (!open) break;
      poll_once(50);
    }
    for (auto& c : children_) {
      c.out->finish();
      c.err->finish();
    }
  }

  const LaunchOptions& o_;
  SignalScope& sigs_;
  std::vector<Child> children_;
};

}  // namespace

std::string signal_name(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGPIPE: return "SIGPIPE";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    default: return "signal " + std::to_string(sig);
  }
}

int pick_free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw_errno("cannot create a socket to find a free port on", "127.0.0.1");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    ::close(s);
    errno = e;
    throw_errno("cannot bind a free port on", "127.0.0.1");
  }
  int port = ntohs(a.sin_port);
  ::close(s);
  return port;
}

void validate(const LaunchOptions& o) {
  const char* f = "<command line>";
  if (o.nproc_per_node < 1) throw ConfigError(f, "--nproc-per-node", 0, "must be at least 1");
  if (o.nnodes < 1) throw ConfigError(f, "--nnodes", 0, "must be at least 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw ConfigError(f, "--node-rank", 0,
                      fmt::format("{} is not in [0, {}) for --nnodes {}", o.node_rank, o.nnodes, o.nnodes));
  if (o.master_port < 1 || o.master_port > 65535)
    throw ConfigError(f, "--master-port", 0, fmt::format("{} is not a TCP port", o.master_port));
  if (o.standalone && o.nnodes != 1)
    throw ConfigError(f, "--standalone", 0, "runs on one node; it cannot be combined with --nnodes > 1");
  if (o.max_restarts < 0) throw ConfigError(f, "--max-restarts", 0, "must be >= 0");
  if (o.stop_grace_s < 0) throw ConfigError(f, "--stop-grace", 0, "must be >= 0");
  if (o.command.empty() || o.command[0].empty())
    throw ConfigError(f, "COMMAND", 0, "no command given (openlm launch [options] -- COMMAND ...)");
}

LaunchResult run(const LaunchOptions& opts) {
  validate(opts);
  std::string addr = opts.standalone ? "127.0.0.1" : opts.master_addr;
  int port = opts.standalone ? pick_free_port() : opts.master_port;
  SignalScope sigs;
  Group group(opts, sigs);
  LaunchResult res;
  for (int attempt = 0;; ++attempt) {
    log::info("openlm launch: starting {} rank(s) on node {}/{} (world {}), master {}:{}{}", opts.nproc_per_node,
              opts.node_rank, opts.nnodes, opts.nproc_per_node * opts.nnodes, addr, port,
              attempt ? fmt::format(", restart {}/{}", attempt, opts.max_restarts) : std::string());
    int sig = 0;
    int failed_idx = group.run(addr, port, attempt, sig);
    res.restarts = attempt;
    if (sig) {
      res.received_signal = sig;
      res.exit_code = 128 + sig;
      res.message = fmt::format("openlm launch: stopped by {}", signal_name(sig));
      return res;
    }
    if (failed_idx < 0) {
      res = LaunchResult{};
      res.restarts = attempt;
      return res;
    }
    const Child& c = group.child(failed_idx);
    res.failed_rank = c.rank;
    res.failed_by_signal = WIFSIGNALED(c.wait_status);
    res.failed_status = res.failed_by_signal ? WTERMSIG(c.wait_status) : WEXITSTATUS(c.wait_status);
    res.exit_code = res.failed_by_signal ? 128 + res.failed_status : res.failed_status;
    if (attempt < opts.max_restarts) {
      log::warn("openlm launch: {}; restarting the group ({} of {} restarts)", describe_exit(c),
                attempt + 1, opts.max_restarts);
      continue;
    }
    res.message = fmt::format("openlm launch: {}{}", describe_exit(c),
                              opts.max_restarts ? fmt::format(" (after {} restart(s))", attempt) : std::string());
    return res;
  }
}

}  // namespace openlm::launch
