// The launcher supervising small /bin/sh children: rank variables, output prefixes, stopping the
// group when a rank dies, restarts, and (through the CLI binary) exit codes and SIGINT forwarding.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "launch/launcher.h"
#include "openlm_cpp/core/error.h"

using namespace openlm::launch;
using Clock = std::chrono::steady_clock;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/openlm_launch_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// Runs the launcher with stdout/stderr of the children captured in files.
struct Captured {
  LaunchResult res;
  std::string out, err;
  double seconds = 0;
};

Captured launch(LaunchOptions o, const TempDir& dir) {
  std::string out = dir.file("out.txt"), err = dir.file("err.txt");
  o.out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  o.err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  Captured c;
  auto t0 = Clock::now();
  c.res = run(o);
  c.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ::close(o.out_fd);
  ::close(o.err_fd);
  c.out = slurp(out);
  c.err = slurp(err);
  return c;
}

LaunchOptions sh(int nproc, const std::string& script) {
  LaunchOptions o;
  o.nproc_per_node = nproc;
  o.standalone = true;
  o.command = {"/bin/sh", "-c", script};
  return o;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

}  // namespace

TEST(Launcher, ChildrenSeeRankVariables) {
  TempDir dir;
  LaunchOptions o = sh(3, "echo \"R=$RANK L=$LOCAL_RANK W=$WORLD_SIZE LW=$LOCAL_WORLD_SIZE G=$GROUP_RANK "
                          "A=$MASTER_ADDR P=$MASTER_PORT RC=$TORCHELASTIC_RESTART_COUNT OMP=$OMP_NUM_THREADS X=$EXTRA\"");
  o.standalone = false;
  o.nnodes = 2;
  o.node_rank = 1;
  o.master_addr = "head.example";
  o.master_port = 23456;
  o.extra_env = {{"EXTRA", "yes"}};
  Captured c = launch(o, dir);
  ASSERT_EQ(c.res.exit_code, 0) << c.res.message << c.err;
  for (int l = 0; l < 3; ++l) {
    std::string want = "[rank" + std::to_string(3 + l) + "]: R=" + std::to_string(3 + l) + " L=" +
                       std::to_string(l) + " W=6 LW=3 G=1 A=head.example P=23456 RC=0 OMP=1 X=yes\n";
    EXPECT_NE(c.out.find(want), std::string::npos) << "missing: " << want << "in:\n" << c.out;
  }
}

TEST(Launcher, StandalonePicksAPortAndPrefixesBothStreams) {
  TempDir dir;
  Captured c = launch(sh(2, "echo out-$RANK; echo err-$RANK >&2; printf 'partial-%s' $RANK; "
                            "echo $MASTER_ADDR:$MASTER_PORT"),
                      dir);
  ASSERT_EQ(c.res.exit_code, 0) << c.res.message;
  EXPECT_NE(c.out.find("[rank0]: out-0\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("[rank1]: out-1\n"), std::string::npos) << c.out;
  EXPECT_NE(c.err.find("[rank1]: err-1\n"), std::string::npos) << c.err;
  EXPECT_EQ(c.out.find("err-"), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(c.out, m, std::regex(R"(\[rank0\]: partial-0127\.0\.0\.1:(\d+)\n)"))) << c.out;
  int port = std::stoi(m[1]);
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

TEST(Launcher, SigkilledRankStopsTheOthersAndIsNamed) {
  TempDir dir;
  // Rank 1 dies by SIGKILL once the others are running; rank 0 ignores SIGTERM (so the launcher must
  // escalate to SIGKILL), rank 2 would sleep for a minute. Their pids go to files.
  std::string script =
      "echo $$ > " + dir.path + "/pid$RANK; "
      "if [ $RANK = 1 ]; then while [ ! -e " + dir.path + "/pid0 ] || [ ! -e " + dir.path + "/pid2 ]; "
      "do sleep 0.05; done; kill -9 $$; fi; "
      "if [ $RANK = 0 ]; then trap '' TERM; fi; sleep 60";
  LaunchOptions o = sh(3, script);
  o.stop_grace_s = 1.0;
  Captured c = launch(o, dir);
  EXPECT_LT(c.seconds, 10.0);
  EXPECT_EQ(c.res.failed_rank, 1);
  EXPECT_TRUE(c.res.failed_by_signal);
  EXPECT_EQ(c.res.failed_status, SIGKILL);
  EXPECT_EQ(c.res.exit_code, 128 + SIGKILL);
  EXPECT_NE(c.res.message.find("rank 1"), std::string::npos) << c.res.message;
  EXPECT_NE(c.res.message.find("SIGKILL"), std::string::npos) << c.res.message;
  for (int r : {0, 2}) {
    pid_t pid = std::stoi(slurp(dir.file("pid" + std::to_string(r))));
    EXPECT_FALSE(alive(pid)) << "rank " << r << " still running";
  }
}

TEST(Launcher, NonZeroExitWithoutRestartsFails) {
  TempDir dir;
  Captured c = launch(sh(2, "if [ $RANK = 1 ]; then exit 3; fi; sleep 30"), dir);
  EXPECT_LT(c.seconds, 10.0);
  EXPECT_EQ(c.res.exit_code, 3);
  EXPECT_EQ(c.res.failed_rank, 1);
  EXPECT_FALSE(c.res.failed_by_signal);
  EXPECT_NE(c.res.message.find("rank 1 (local rank 1"), std::string::npos) << c.res.message;
  EXPECT_NE(c.res.message.find("exited with status 3"), std::string::npos) << c.res.message;
}

TEST(Launcher, MaxRestartsStartsTheGroupAgain) {
  TempDir dir;
  std::string marker = dir.file("failed_once");
  std::string script = "echo attempt=$TORCHELASTIC_RESTART_COUNT; if [ $RANK = 1 ] && [ ! -e " + marker +
                       " ]; then touch " + marker + "; exit 4; fi; exit 0";
  LaunchOptions o = sh(2, script);
  o.max_restarts = 1;
  Captured c = launch(o, dir);
  EXPECT_EQ(c.res.exit_code, 0) << c.res.message;
  EXPECT_EQ(c.res.restarts, 1);
  EXPECT_NE(c.out.find("[rank1]: attempt=0"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("[rank0]: attempt=1"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("[rank1]: attempt=1"), std::string::npos) << c.out;

  // A rank that always fails uses up the restarts and is then reported.
  LaunchOptions always = sh(2, "if [ $RANK = 0 ]; then exit 9; fi; sleep 30");
  always.max_restarts = 2;
  Captured d = launch(always, dir);
  EXPECT_EQ(d.res.exit_code, 9);
  EXPECT_EQ(d.res.restarts, 2);
  EXPECT_NE(d.res.message.find("after 2 restart(s)"), std::string::npos) << d.res.message;
}

TEST(Launcher, ValidatesOptions) {
  LaunchOptions o = sh(2, "true");
  o.node_rank = 1;
  EXPECT_THROW(validate(o), openlm::ConfigError);
  o = sh(0, "true");
  EXPECT_THROW(validate(o), openlm::ConfigError);
  o = sh(1, "true");
  o.nnodes = 2;  // standalone is one node
  EXPECT_THROW(validate(o), openlm::ConfigError);
  o = sh(1, "true");
  o.command.clear();
  try {
    validate(o);
    FAIL() << "no command accepted";
  } catch (const openlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("COMMAND"), std::string::npos);
  }
}

// ---- the `openlm launch` command line (the real main.cpp + cmd_launch.cpp) ----

namespace {

/// Starts the CLI with stdout+stderr into `log`; returns its pid.
pid_t start_cli(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    std::vector<std::string> a = args;
    a.insert(a.begin(), OPENLM_LAUNCH_CLI);
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid, double timeout_s) {
  auto end = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
  int st = 0;
  while (::waitpid(pid, &st, WNOHANG) == 0) {
    if (Clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

TEST(LaunchCli, ExitStatusAndMessage) {
  TempDir dir;
  std::string log = dir.file("log");
  pid_t pid = start_cli({"launch", "--nproc-per-node", "2", "--standalone", "--", "/bin/sh", "-c",
                         "if [ $RANK = 1 ]; then echo bye; exit 5; fi; sleep 30"},
                        log);
  EXPECT_EQ(wait_exit(pid, 15), 5);
  std::string text = slurp(log);
  EXPECT_NE(text.find("[rank1]: bye"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 1 (local rank 1"), std::string::npos) << text;
  EXPECT_NE(text.find("exited with status 5"), std::string::npos) << text;

  pid = start_cli({"launch", "--nproc-per-node", "1", "--", "/nonexistent/program"}, log);
  EXPECT_EQ(wait_exit(pid, 15), 127);
  EXPECT_NE(slurp(log).find("cannot execute '/nonexistent/program'"), std::string::npos) << slurp(log);

  pid = start_cli({"launch", "--nproc-per-node", "2", "--node-rank", "3", "--", "true"}, log);
  EXPECT_EQ(wait_exit(pid, 15), 1);
  EXPECT_NE(slurp(log).find("--node-rank"), std::string::npos) << slurp(log);
}

TEST(LaunchCli, ForwardsSigint) {
  TempDir dir;
  std::string log = dir.file("log");
  std::string script = "trap 'echo got-INT; exit 0' INT; echo ready; while true; do sleep 0.05; done";
  pid_t pid = start_cli({"launch", "--nproc-per-node", "2", "--standalone", "--", "/bin/sh", "-c", script}, log);
  auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end) {
    std::string t = slurp(log);
    if (t.find("[rank0]: ready") != std::string::npos && t.find("[rank1]: ready") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid, 10), 128 + SIGINT);
  std::string text = slurp(log);
  EXPECT_NE(text.find("[rank0]: got-INT"), std::string::npos) << text;
  EXPECT_NE(text.find("[rank1]: got-INT"), std::string::npos) << text;
  EXPECT_NE(text.find("stopped by SIGINT"), std::string::npos) << text;
}

TEST(LaunchCli, PassesSigusr1ThroughWithoutStopping) {
  TempDir dir;
  std::string log = dir.file("log");
  std::string script = "trap 'echo got-USR1; exit 0' USR1; echo ready; while true; do sleep 0.05; done";
  pid_t pid = start_cli({"launch", "--nproc-per-node", "2", "--standalone", "--", "/bin/sh", "-c", script}, log);
  auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end) {
    std::string t = slurp(log);
    if (t.find("[rank0]: ready") != std::string::npos && t.find("[rank1]: ready") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGUSR1);
  EXPECT_EQ(wait_exit(pid, 10), 0);  // the ranks handled it and finished normally
  std::string text = slurp(log);
  EXPECT_NE(text.find("[rank0]: got-USR1"), std::string::npos) << text;
  EXPECT_NE(text.find("[rank1]: got-USR1"), std::string::npos) << text;
}

TEST(LaunchCli, FirstSigintWaitsTheGraceSecondKillsAtOnce) {
  // The first Ctrl-C is a graceful stop (ranks get SIGINT and time to checkpoint); ranks that do
  // not stop are killed by a second one at once, long before the 60 s grace.
  TempDir dir;
  std::string log = dir.file("log");
  std::string script = "trap 'echo got-INT' INT; echo ready; while true; do sleep 0.05; done";
  pid_t pid = start_cli({"launch", "--nproc-per-node", "2", "--standalone", "--stop-grace", "60", "--", "/bin/sh", "-c",
                         script},
                        log);
  auto wait_for = [&](const std::string& a, const std::string& b) {
    auto end = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < end) {
      std::string t = slurp(log);
      if (t.find(a) != std::string::npos && t.find(b) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  ASSERT_TRUE(wait_for("[rank0]: ready", "[rank1]: ready")) << slurp(log);
  ::kill(pid, SIGINT);
  ASSERT_TRUE(wait_for("[rank0]: got-INT", "[rank1]: got-INT")) << slurp(log);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(alive(pid)) << "the launcher did not wait for the ranks after the first SIGINT";
  const auto t0 = Clock::now();
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid, 10), 128 + SIGINT);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  EXPECT_NE(slurp(log).find("killing the ranks now"), std::string::npos) << slurp(log);
}
