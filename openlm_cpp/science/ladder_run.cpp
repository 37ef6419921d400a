#include "openlm_cpp/science/ladder_run.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/science/gnuplot.h"
#include "openlm_cpp/science/results.h"

namespace fs = std::filesystem;

namespace openlm::science {
namespace {

std::atomic<pid_t> g_child{0};
/// While a run is in flight: SIGTERM is passed on to it (the launcher checkpoints its ranks and
/// exits), SIGINT is left to it (the terminal sends Ctrl-C to the whole process group already; a
/// second copy would read as the "second Ctrl-C" that kills ranks at once). Either way the driver
/// waits for the run to end and then reports its exit status.
void on_signal(int sig) {
  const pid_t c = g_child.load();
  if (sig == SIGTERM && c > 0) ::kill(c, SIGTERM);
}

/// Runs argv with stdout -> out_path and stderr -> err_path (appended; the same path may be given
/// twice); returns the exit status (128 + signal when killed).
int run_process(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("cannot fork to run", argv[0]);
  if (pid == 0) {  // child: handlers reset to default by exec
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int err = err_path == out_path ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(127);
    ::dup2(in, 0), ::dup2(out, 1), ::dup2(err, 2);
    ::execv(args[0], args.data());
    const std::string msg = "cannot run " + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  g_child = pid;
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string tail_of(const std::string& path, std::size_t max_lines) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  std::string out;
  for (std::size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size(); ++i)
    out += "  " + lines[i] + "\n";
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// DIR/runs/<name>/recipe.yaml: the run's resolved recipe (JSON is YAML), written when it changed.
std::string write_recipe(const LadderSpec& spec, const PlannedRun& r) {
  fs::create_directories(r.run_dir);
  const std::string path = (fs::path(r.run_dir) / "recipe.yaml").string();
  const std::string text =
      fmt::format("# openlm ladder {} ({}), scale {}: {} parameters ({} count), {} tokens, {} steps of {} tokens, "
                  "{:.4g} FLOPs ({}).\n# Resolved by the ladder driver; `openlm train` reads it as it is.\n",
                  spec.name, spec.file, r.name, r.params, spec.params, r.tokens, r.steps, r.tokens_per_step, r.flops,
                  spec.flops) +
      to_json(r.cfg).dump(2) + "\n";
  if (fs::exists(path) && slurp(path) != text) {
    if (fs::exists(fs::path(r.run_dir) / "metrics.jsonl"))
      log::warn("ladder: run {}: its recipe changed since it started; resuming with the new one", r.name);
  }
  if (!fs::exists(path) || slurp(path) != text) write_text_file(path, text);
  return path;
}

bool finished(const PlannedRun& r, std::optional<EvalRecord>* ev) {
  *ev = last_eval(r.run_dir, r.val_source);
  return ev->has_value() && (*ev)->step >= r.steps;
}

/// Runs `openlm eval RUN --suite SUITE --json` once per run; RUN/suite.json keeps the answer.
nlohmann::json run_suite(const LadderSpec& spec, const PlannedRun& r, const std::string& bin) {
  const std::string out = (fs::path(r.run_dir) / "suite.json").string();
  if (!fs::exists(out)) {
    log::info("ladder: run {}: downstream suite {}", r.name, spec.suite);
    const std::string tmp = out + ".tmp", logp = (fs::path(r.run_dir) / "suite.log").string();
    std::error_code ec;
    fs::remove(tmp, ec);
    const int rc = run_process({bin, "eval", r.run_dir, "--suite", spec.suite, "--json"}, tmp, logp);
    if (rc != 0)
      throw RunFailed("ladder: run " + r.name + ": `openlm eval --suite` failed (exit status " + std::to_string(rc) +
                          "); its log " + logp + " ends:\n" + tail_of(logp, 15),
                      rc);
    fs::rename(tmp, out);
  }
  try {
    // `--json` prints one JSON line; anything printed before it is not the answer.
    std::string last, text = slurp(out);
    std::stringstream ss(text);
    for (std::string l; std::getline(ss, l);)
      if (l.find_first_not_of(" \t\r") != std::string::npos) last = l;
    return nlohmann::json::parse(last);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(out + ": the suite's --json output is not JSON: " + e.what());
  }
}

/// A suite's scores as columns: its top-level numbers (e.g. mean_centered_acc) and, for each entry
/// of its "tasks" list, "<task>.acc" (the format of `openlm eval --suite --json`).
std::map<std::string, double> suite_columns(const nlohmann::json& j) {
  std::map<std::string, double> cols;
  if (!j.is_object()) return cols;
  for (auto& [k, v] : j.items())
    if (v.is_number()) cols[k] = v.get<double>();
  if (j.contains("tasks") && j["tasks"].is_array())
    for (auto& t : j["tasks"])
      if (t.is_object() && t.contains("task") && t["task"].is_string() && t.contains("acc") && t["acc"].is_number())
        cols[t["task"].get<std::string>() + ".acc"] = t["acc"].get<double>();
  return cols;
}

struct Outcome {
  std::string status;  ///< done | trained | pending | partial
  std::optional<EvalRecord> eval;
  nlohmann::json suite;
};

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) r += c == '"' ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

}  // namespace

std::string plan_table(const LadderSpec& spec, const std::vector<PlannedRun>& runs) {
  std::string s = fmt::format("ladder {} ({}): params counted as '{}', compute = {} x tokens\n", spec.name, spec.file,
                              spec.params, spec.flops == "6nd" ? "6 N" : "(6 N + 12 L A seq_len)");
  s += fmt::format("  {:<16} {:>14} {:>8} {:>18} {:>10} {:>12} {:>12}\n", "run", "params", "mult", "tokens", "steps",
                   "tokens/step", "FLOPs");
  for (auto& r : runs)
    s += fmt::format("  {:<16} {:>14} {:>8} {:>18} {:>10} {:>12} {:>12.4g}\n", r.name, r.params,
                     r.multiplier > 0 ? fmt::format("{:g}x", r.multiplier) : std::string("-"), r.tokens, r.steps,
                     r.tokens_per_step, r.flops);
  return s;
}

std::string sbatch_script(const LadderSpec& spec, const PlannedRun& r, const std::string& bin, const std::string& out) {
  const auto& sl = spec.slurm;
  std::string s = fmt::format(
      "#!/bin/bash\n"
      "# openlm ladder {} ({}), scale {}: {} parameters, {} tokens, {} steps, {:.4g} FLOPs.\n"
      "# Written by `openlm ladder --emit-slurm`; the same srun mode as examples/slurm/train.sbatch.\n"
      "# The recipe resumes (resume: latest), so resubmitting continues the run. When every run has\n"
      "# finished: openlm ladder {} --out {} --collect\n"
      "#SBATCH --job-name={}-{}\n#SBATCH --nodes={}\n#SBATCH --gpus-per-node={}\n#SBATCH --ntasks-per-node={}\n"
      "#SBATCH --cpus-per-task={}\n#SBATCH --time={}\n#SBATCH --output={}/slurm-%j.out\n#SBATCH --signal=USR1@300\n",
      spec.name, spec.file, r.name, r.params, r.tokens, r.steps, r.flops, spec.file, out, spec.name, r.name, sl.nodes,
      sl.gpus_per_node, sl.gpus_per_node, sl.cpus_per_task, sl.time, r.run_dir);
  if (!sl.partition.empty()) s += "#SBATCH --partition=" + sl.partition + "\n";
  if (!sl.account.empty()) s += "#SBATCH --account=" + sl.account + "\n";
  for (auto& x : sl.sbatch) s += "#SBATCH " + x + "\n";
  s += fmt::format(
      "set -euo pipefail\n"
      "OPENLM=${{OPENLM:-{}}}\n"
      "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n"
      "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"
      "export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-$((SLURM_CPUS_PER_TASK > 1 ? SLURM_CPUS_PER_TASK : 1))}}\n"
      "srun --kill-on-bad-exit=1 \"$OPENLM\" train {}\n",
      bin, (fs::path(r.run_dir) / "recipe.yaml").string());
  return s;
}

void run_ladder(const LadderSpec& spec, const std::vector<PlannedRun>& runs, const LadderOptions& opt) {
  const fs::path out = fs::absolute(opt.out_dir).lexically_normal();
  fs::create_directories(out / "runs");
  const int64_t nproc = opt.nproc_per_node > 0 ? opt.nproc_per_node : spec.nproc_per_node;
  log::info("{}", plan_table(spec, runs));
  if (opt.emit_slurm) {
    fs::create_directories(out / "slurm");
    std::string all = "#!/bin/bash\n# Submits every unfinished run of ladder " + spec.name + ".\nset -euo pipefail\n";
    for (auto& r : runs) {
      std::optional<EvalRecord> ev;
      write_recipe(spec, r);
      if (finished(r, &ev)) continue;
      const std::string p = (out / "slurm" / (r.name + ".sbatch")).string();
      write_text_file(p, sbatch_script(spec, r, opt.openlm_bin, out.string()));
      fs::permissions(p, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
      all += "sbatch " + p + "\n";
    }
    const std::string sub = (out / "slurm" / "submit_all.sh").string();
    write_text_file(sub, all);
    fs::permissions(sub, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    log::info("ladder: sbatch scripts in {} (submit them all with {}); then: openlm ladder {} --out {} --collect",
              (out / "slurm").string(), sub, spec.file, out.string());
    return;
  }
  std::vector<Outcome> outcomes;
  for (auto& r : runs) {
    Outcome o;
    const std::string recipe = write_recipe(spec, r);
    if (finished(r, &o.eval)) {
      o.status = "done";
      log::info("ladder: run {}: finished (loss {:.4f} on {} at step {}), skipped", r.name, o.eval->loss, r.val_source,
                o.eval->step);
    } else if (opt.collect_only) {
      o.status = o.eval ? "partial" : "pending";
      log::warn("ladder: run {}: not finished ({}), left out of the fit", r.name, o.status);
    } else {
      const bool resuming = fs::exists(fs::path(r.run_dir) / "checkpoints" / "latest");
      const std::string logp = (fs::path(r.run_dir) / "train.log").string();
      log::info("ladder: run {}: {} ({} steps, {} process(es)); log {}", r.name,
                resuming ? "resuming from its latest checkpoint" : "training", r.steps, nproc, logp);
      const int rc = run_process({opt.openlm_bin, "launch", "--standalone", "--nproc-per-node", std::to_string(nproc),
                                  "--", opt.openlm_bin, "train", recipe},
                                 logp, logp);
      if (rc != 0)
        throw RunFailed(fmt::format("ladder: run {} failed (exit status {}); rerun the same command to resume it. "
                                    "Its log {} ends:\n{}",
                                    r.name, rc, logp, tail_of(logp, 20)),
                        rc);
      if (!finished(r, &o.eval))
        throw RunFailed(fmt::format("ladder: run {} ended without its final evaluation: no eval record of source '{}' "
                                    "at step {} in {}/metrics.jsonl",
                                    r.name, r.val_source, r.steps, r.run_dir),
                        1);
      o.status = "trained";
      log::info("ladder: run {}: loss {:.4f} on {}", r.name, o.eval->loss, r.val_source);
    }
    if (!spec.suite.empty() && (o.status == "done" || o.status == "trained")) o.suite = run_suite(spec, r, opt.openlm_bin);
    outcomes.push_back(std::move(o));
  }

  // ladder.csv and the runs of ladder.json; a run's suite scores (top-level numbers) become columns.
  std::set<std::string> suite_keys;
  for (auto& o : outcomes)
    for (auto& [k, v] : suite_columns(o.suite)) suite_keys.insert(k);
  std::string csv = "name,model,params,params_total,multiplier,tokens,tokens_per_step,steps,compute,loss,status";
  for (auto& k : suite_keys) csv += "," + csv_cell("suite." + k);
  csv += "\n";
  nlohmann::json jruns = nlohmann::json::array();
  Results res;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const auto& o = outcomes[i];
    const bool have = o.status == "done" || o.status == "trained";
    csv += fmt::format("{},{},{},{},{},{},{},{},{:.17g},{},{}", csv_cell(r.name), csv_cell(r.cfg.model.name), r.params,
                       r.size.total, r.multiplier > 0 ? fmt::format("{:g}", r.multiplier) : std::string(), r.tokens,
                       r.tokens_per_step, r.steps, r.flops, have ? fmt::format("{:.9g}", o.eval->loss) : std::string(),
                       o.status);
    const auto cols = suite_columns(o.suite);
    for (auto& k : suite_keys)
      csv += "," + (cols.count(k) ? fmt::format("{:.9g}", cols.at(k)) : std::string());
    csv += "\n";
    nlohmann::json j = {{"name", r.name}, {"model", to_json(r.cfg.model)}, {"params", r.params},
                        {"params_rule", spec.params}, {"params_total", r.size.total},
                        {"params_non_embedding", r.size.non_embedding}, {"tokens", r.tokens},
                        {"tokens_per_step", r.tokens_per_step}, {"steps", r.steps},
                        {"flops_per_token", r.flops_per_token}, {"compute", r.flops}, {"run_dir", r.run_dir},
                        {"val_source", r.val_source}, {"status", o.status}};
    j["multiplier"] = r.multiplier > 0 ? nlohmann::json(r.multiplier) : nlohmann::json(nullptr);
    j["loss"] = have ? nlohmann::json(o.eval->loss) : nlohmann::json(nullptr);
    j["eval_step"] = o.eval ? nlohmann::json(o.eval->step) : nlohmann::json(nullptr);
    if (!o.suite.is_null()) j["suite"] = o.suite;
    jruns.push_back(j);
    if (have) res.points.push_back({r.flops, o.eval->loss}), res.labels.push_back(r.name);
  }
  write_text_file((out / "ladder.csv").string(), csv);
  nlohmann::json doc = {{"ladder", spec.name},
                        {"file", spec.file},
                        {"params_rule", spec.params},
                        {"compute_formula", spec.flops == "6nd" ? "C = 6 N D" : "C = (6 N + 12 L A seq_len) D"},
                        {"tokens_per_param", spec.tokens_per_param},
                        {"runs", jruns}};
  std::optional<FitReport> fit;
  std::set<double> distinct;
  for (auto& p : res.points) distinct.insert(p.compute);
  if (distinct.size() >= 3) {
    fit = fit_results(res);
    doc.update(fit_json(res, *fit));
  } else {
    doc["fit"] = nullptr;
    log::warn("ladder: {} finished run(s) with distinct compute; the fit needs at least 3, so there is no fit or plot",
              distinct.size());
  }
  write_json_file((out / "ladder.json").string(), doc);
  log::info("ladder: wrote {} and {}", (out / "ladder.csv").string(), (out / "ladder.json").string());
  if (!fit) return;
  log::info("ladder: L(C) = {:.4f} + {:.4g} * C^(-{:.4f}) (log-space rmse {:.3g}); ln L = {:.4f} {:+.4f} ln C; "
            "next scale C = {:.3g}: predicted loss {:.4f}",
            fit->fit.E, fit->fit.A, fit->fit.alpha, fit->fit.rmse, fit->loglog.a, fit->loglog.b, fit->next_compute,
            fit->fit.predict(fit->next_compute));
  write_ladder_png(out.string(), res, *fit, "ladder " + spec.name);
  log::info("ladder: wrote {}", (out / "ladder.png").string());
}

void fit_csv(const std::string& csv, const std::string& out_dir) {
  const Results res = read_results_csv(csv);
  check_points(res.points, 3, csv);
  const FitReport f = fit_results(res);
  fs::create_directories(out_dir);
  nlohmann::json doc = {{"source", csv}};
  doc.update(fit_json(res, f));
  const fs::path out(out_dir);
  write_json_file((out / "ladder.json").string(), doc);
  log::info("ladder fit: L(C) = {:.4f} + {:.4g} * C^(-{:.4f}) (log-space rmse {:.3g}); ln L = {:.4f} {:+.4f} ln C; "
            "wrote {}",
            f.fit.E, f.fit.A, f.fit.alpha, f.fit.rmse, f.loglog.a, f.loglog.b, (out / "ladder.json").string());
  write_ladder_png(out_dir, res, f, "scaling fit of " + fs::path(csv).filename().string());
  log::info("ladder fit: wrote {}", (out / "ladder.png").string());
}

}  // namespace openlm::science
