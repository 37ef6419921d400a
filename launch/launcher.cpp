#include "launch/launcher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>

#include "launch/child.h"
#include "launch/output_relay.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::launch {
namespace {

using detail::Child;
using detail::describe_exit;
using detail::failed;
using detail::spawn;

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
    // A closed output pipe (`openlm launch ... | head`) must not kill the supervisor mid-run.
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ::sigaction(SIGPIPE, &ign, &old_pipe_);
  }
  ~SignalScope() {
    for (int i = 0; i < kCount; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
    ::sigaction(SIGPIPE, &old_pipe_, nullptr);
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
  struct sigaction old_pipe_;
};

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
      try {
        spawn(o_, addr, port, restart, c);
      } catch (...) {  // out of processes/fds: do not leave the ranks already started behind
        for (auto& started : children_)
          if (started.running) {
            ::kill(-started.pid, SIGKILL);
            ::waitpid(started.pid, nullptr, 0);
            started.running = false;
          }
        throw;
      }
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
        log::warn("openlm launch: received {}, forwarding to {} rank(s) (they save a checkpoint and stop; "
                  "SIGKILL after {} s{})",
                  signal_name(s), count_running(), o_.stop_grace_s,
                  s == SIGINT ? ", or at once on a second Ctrl-C" : "");
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
      if (int s = sigs_.drain(); s == SIGINT && !killed) {  // a (second) Ctrl-C: no more patience
        log::warn("openlm launch: received SIGINT again; killing the ranks now");
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
