// The checkpoint side of a training run: per-rank sharded saves (sync or async), resume with
// resharding, and init_from a native checkpoint's full state. Formats: docs/CHECKPOINT_FORMAT.md.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <sched.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/live_handoff.h"
#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/run_state.h"

namespace stdfs = std::filesystem;

namespace openlm {
namespace {

using checkpoint::StateSlice;

/// This rank's slices of the weights and the optimizer moments, as views into the live state.
struct LocalLayout {
  std::vector<StateSlice> model, optim;
  std::vector<StateSlice> averages;  // "<param>.avg_<averager>", stored with the optimizer state
  bool writer = true;  // one rank per distinct shard writes it
  int shard = 0, shards = 1;
};

using FileJob = checkpoint::FileTensors;

std::vector<int64_t> shape_of(const at::Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

LocalLayout local_layout(Run& r) {
  LocalLayout L;
  const std::size_t A = r.averages ? r.averages->size() : 0;
  if (!r.sharded) {  // one process: every tensor whole
    const auto named = r.model->named_parameters();
    const auto slots = A > 0 ? optimizer_slots(r) : std::vector<std::size_t>();
    for (std::size_t j = 0; j < named.size(); ++j) {
      const auto& [n, t] = named[j];
      L.model.push_back({n, shape_of(t), 0, t.numel(), t.detach().view({-1})});
      for (std::size_t k = 0; k < A; ++k)
        L.averages.push_back({n + ".avg_" + r.averages->name(k), shape_of(t), 0, t.numel(),
                              r.averages->average(k, slots[j]).view({-1})});
    }
    for (auto& [n, t] : r.opt->state()) L.optim.push_back({n, shape_of(t), 0, t.numel(), t.view({-1})});
    return L;
  }
  auto masters = r.sharded->masters();
  auto names = r.sharded->shard_names();
  std::map<std::string, at::Tensor> state;
  for (auto& [n, t] : r.opt->state()) state[n] = t;
  for (auto& s : r.sharded->local_slices()) {
    const int64_t len = s.end - s.begin;
    L.model.push_back({s.name, s.shape, s.begin, s.end, masters[s.unit].narrow(0, s.shard_offset, len)});
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"})
      L.optim.push_back({s.name + suffix, s.shape, s.begin, s.end,
                         state.at(names[s.unit] + suffix).narrow(0, s.shard_offset, len)});
    for (std::size_t k = 0; k < A; ++k)
      L.averages.push_back({s.name + ".avg_" + r.averages->name(k), s.shape, s.begin, s.end,
                            r.averages->average(k, s.unit).narrow(0, s.shard_offset, len)});
  }
  L.writer = r.sharded->writes_shard();
  L.shard = r.sharded->shard_index();
  L.shards = r.sharded->shard_count();
  return L;
}

/// The files this rank writes of a checkpoint's state (none when another rank writes its shard):
/// its slices of the weights, then of the optimizer moments and weight averages, as views into the
/// live state. Their layouts are appended to (*layout)["model"] and (*layout)["optim"] when given.
std::vector<FileJob> state_files(Run& r, nlohmann::json* layout) {
  LocalLayout L = local_layout(r);
  std::vector<FileJob> jobs;
  if (!L.writer) return jobs;
  const std::string tag = fmt::format("shard{:05d}-of-{:05d}.safetensors", L.shard, L.shards);
  L.optim.insert(L.optim.end(), L.averages.begin(), L.averages.end());  // saved beside the moments
  for (auto [kind, slices] : {std::pair<const char*, std::vector<StateSlice>*>{"model", &L.model}, {"optim", &L.optim}}) {
    const std::string file = std::string(kind) + "-" + tag;
    if (layout) (*layout)[kind].push_back(checkpoint::slice_layout(file, r.env.rank, *slices));
    jobs.push_back({file, checkpoint::slice_tensors(*slices)});
  }
  return jobs;
}

/// Every rank's `mine`, in rank order (just `mine` in a one-process run).
std::vector<std::string> gather_strings(Run& r, const std::string& mine) {
  if (!r.comm) return {mine};
  return r.comm->all_gather_bytes(mine);
}

/// Throws on every rank when any rank reports an error ("" = fine), naming the first one.
void agree_or_throw(Run& r, const std::string& error, const std::string& context) {
  auto all = gather_strings(r, error);
  for (std::size_t i = 0; i < all.size(); ++i)
    if (!all[i].empty())
      throw IoError(context + (all.size() > 1 ? " (rank " + std::to_string(i) + ")" : "") + ": " + all[i]);
}

std::string bytes_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.nbytes()));
}

at::Tensor tensor_of(const std::string& bytes) {
  at::Tensor t = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

/// This rank's generator states: CPU, and the current CUDA device's when training on CUDA.
std::pair<std::string, std::string> rng_states(const Run& r) {
  std::pair<std::string, std::string> out;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.first = bytes_of(gen.get_state());
  }
  if (r.device.is_cuda()) {
    auto gen = at::globalContext().defaultGenerator(r.device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.second = bytes_of(gen.get_state());
  }
  return out;
}

void restore_rng(const Run& r, const std::string& dir, const nlohmann::json& meta) {
  // Only when metadata.json lists it, i.e. verify_checkpoint has checked it (a regular file inside
  // the checkpoint whose checksum matches).
  if (!meta.contains("files") || !meta["files"].contains("rng.safetensors")) return;
  stdfs::path p = stdfs::path(dir) / "rng.safetensors";
  if (!stdfs::exists(p)) return;
  if (meta.value("world_size", 1) != r.env.world_size) {
    log::info("resume: RNG states were saved by {} ranks; this run's {} ranks keep their seeded states",
              meta.value("world_size", 1), r.env.world_size);
    return;
  }
  checkpoint::SafetensorsFile f(p.string());
  const std::string key = fmt::format("rank{:05d}", r.env.rank);
  if (f.contains(key + ".cpu")) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(f.get(key + ".cpu"));
  }
  if (r.device.is_cuda() && f.contains(key + ".cuda")) {
    auto gen = at::globalContext().defaultGenerator(r.device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(f.get(key + ".cuda"));
  }
}

/// The first of `candidates` (as rank 0 lists them) whose checksums verify; the ranks share the
/// hashing, each reading a share of the files. "" when none does. With `must_verify` (an explicit
/// path) a failure is an error instead of a reason to try the next one. `failed` gets each
/// candidate tried before it that failed, with the reason.
std::string agreed_checkpoint(Run& r, std::vector<std::string> candidates, bool must_verify, nlohmann::json& meta,
                              std::vector<std::pair<std::string, std::string>>* failed = nullptr) {
  if (r.comm) {
    auto listed = gather_strings(r, nlohmann::json(candidates).dump());
    candidates = nlohmann::json::parse(listed[0]).get<std::vector<std::string>>();
  }
  for (auto& dir : candidates) {
    std::string error;
    try {
      meta = checkpoint::verify_checkpoint(dir, r.env.rank, r.env.world_size);
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "verification failed";
    }
    std::string first;
    for (auto& e : gather_strings(r, error))
      if (!e.empty() && first.empty()) first = e;
    if (first.empty()) return dir;
    if (must_verify) throw DataError(first);
    if (r.env.rank == 0) log::warn("skipping checkpoint: {}", first);
    if (failed) failed->emplace_back(dir, first);
  }
  return "";
}

/// "  <dir>: <why>" lines, one per failed checkpoint.
std::string failure_list(const std::vector<std::pair<std::string, std::string>>& failed) {
  std::string out;
  for (auto& [dir, why] : failed) out += "\n  " + stdfs::path(dir).filename().string() + ": " + why;
  return out;
}

/// Loads this rank's slices of the weights (and optimizer state) from any saved layout.
void load_state(Run& r, const std::string& dir, const nlohmann::json& meta, bool optimizer) {
  LocalLayout L = local_layout(r);
  at::NoGradGuard no_grad;
  checkpoint::StateReader(dir, meta, "model").read_into(L.model);
  if (r.sharded) r.sharded->invalidate();
  if (!optimizer) return;
  checkpoint::StateReader opt(dir, meta, "optim");
  if (opt.names().empty())
    throw DataError("checkpoint '" + dir + "' holds no optimizer state (weights only): use init_from_mode: weights");
  opt.read_into(L.optim);
  r.opt->load_state(r.opt->state(), meta.at("optimizer_steps").get<int64_t>());
  if (L.averages.empty()) return;
  bool saved = true;
  for (const auto& a : L.averages) saved = saved && opt.contains(a.name);
  if (saved) {
    opt.read_into(L.averages);
  } else {  // e.g. averagers added to a run that had none: they start from the loaded weights
    r.averages->reset();
    if (r.env.rank == 0)
      log::warn("checkpoint '{}' holds no weight averages for this run's averagers; they start from its weights", dir);
  }
}

void commit_pending(Run& r) {
  std::unique_ptr<PendingSave> p = std::move(r.pending);
  if (p->live) p->live->start();  // the state stays as it is while this waits for the writer
  nlohmann::json report;
  try {
    report = {{"files", p->files.get()}};
  } catch (const std::exception& e) {
    report = {{"error", e.what()}};
  }
  if (p->live) r.handoff_spare = p->live->take_copies();  // the writer is done with them
  const std::string context = "checkpoint step " + std::to_string(p->step) + " not saved (earlier checkpoints are kept)";
  nlohmann::json files = nlohmann::json::object();
  std::string error;
  for (auto& s : gather_strings(r, report.dump())) {
    auto j = nlohmann::json::parse(s);
    if (j.contains("error")) {
      if (error.empty()) error = j["error"].get<std::string>();
    } else {
      files.update(j["files"]);
    }
  }
  if (!error.empty()) throw IoError(context + ": " + error);
  std::string commit_error;
  if (r.env.rank == 0) {
    try {
      p->metadata["files"] = files;
      std::string dir = checkpoint::commit_checkpoint(r.cfg.run_dir, p->step, std::move(p->metadata),
                                                      r.cfg.checkpoint.keep_last, r.cfg.checkpoint.keep_every,
                                                      r.resumed_from);
      log::info("checkpoint saved: {}", dir);
    } catch (const std::exception& e) {
      commit_error = e.what();
    }
  }
  agree_or_throw(r, commit_error, context);
}

}  // namespace

NamedTensors full_weights(Run& r) {
  if (!r.sharded) {
    NamedTensors out;
    for (auto& [n, t] : r.model->named_parameters()) out.emplace_back(n, t.detach());
    return out;
  }
  // Only rank 0 writes model.safetensors and samples text: the others only take part in the gathers.
  return r.sharded->full_from_shards(r.sharded->masters(), "", /*keep=*/r.env.rank == 0);
}

void save_run_checkpoint(Run& r, int64_t step) {
  finish_pending_save(r);  // one write in flight at a time, and never lose an error
  const bool rank0 = r.env.rank == 0;
  std::string error;
  if (rank0) {
    try {
      checkpoint::begin_checkpoint(r.cfg.run_dir, step);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_throw(r, error, "checkpoint step " + std::to_string(step) + " not saved");

  nlohmann::json mine = {{"model", nlohmann::json::array()}, {"optim", nlohmann::json::array()}};
  std::vector<FileJob> jobs = state_files(r, &mine);
  auto layouts = gather_strings(r, mine.dump());
  auto [cpu_rng, cuda_rng] = rng_states(r);
  auto cpu_rngs = gather_strings(r, cpu_rng);
  auto cuda_rngs = gather_strings(r, cuda_rng);

  auto pending = std::make_unique<PendingSave>();
  pending->step = step;
  if (rank0) {
    nlohmann::json shards = {{"model", nlohmann::json::array()}, {"optim", nlohmann::json::array()}};
    for (auto& s : layouts) {
      auto j = nlohmann::json::parse(s);
      for (const char* kind : {"model", "optim"})
        for (auto& f : j[kind]) shards[kind].push_back(f);
    }
    checkpoint::NamedTensors rng;
    for (std::size_t i = 0; i < cpu_rngs.size(); ++i) {
      const std::string key = fmt::format("rank{:05d}", i);
      rng.emplace_back(key + ".cpu", tensor_of(cpu_rngs[i]));
      if (!cuda_rngs[i].empty()) rng.emplace_back(key + ".cuda", tensor_of(cuda_rngs[i]));
    }
    jobs.push_back({"rng.safetensors", std::move(rng)});
    pending->metadata = {{"format", "openlm-cpp sharded checkpoint v1"},
                         {"tokens_seen", r.tokens_seen},
                         {"world_size", r.env.world_size},
                         {"strategy", r.cfg.parallel.strategy},
                         {"optimizer_steps", r.opt->steps()},
                         {"lr_schedule", {{"step", step}, {"total_steps", r.total}}},
                         {"data_state", r.data->state()},
                         {"shards", shards},
                         {"config", to_json(r.cfg)}};
  }
  // Writes the files of `todo`, reading the tensors through `live`'s gates when given.
  auto write = [run_dir = r.cfg.run_dir, step](const std::vector<FileJob>& todo, checkpoint::LiveHandOff* live) {
    nlohmann::json sums = nlohmann::json::object();
    for (std::size_t f = 0; f < todo.size(); ++f)
      sums[todo[f].name] = checkpoint::write_checkpoint_file(run_dir, step, todo[f].name, todo[f].tensors, {},
                                                             live ? &live->gate(f) : nullptr);
    return sums;
  };
  if (r.cfg.checkpoint.async) {
    // Written in the background at the lowest CPU priority (SCHED_IDLE, else nice 19; the writer
    // thread only; on CPU only with passive OpenMP threads, see below): on a busy CPU it takes the cycles the compute threads leave instead of
    // competing for every step. A later poll commits once every rank has written. On CPU the
    // writer reads the state once train_step hands it over before its next optimizer update
    // (wait_for_live_save: a copy into buffers made at the start of the run, see
    // checkpoint/live_handoff.h), or live when a commit waits for it. On CUDA the slices are
    // first copied to host memory.
    auto low_priority = [] {
      sched_param sp{};
      if (::sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
    };
    if (r.device.is_cuda()) {
      for (auto& job : jobs)
        for (auto& [n, t] : job.tensors) t = t.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
      pending->files = std::async(std::launch::async, [write, low_priority](std::vector<FileJob> todo) {
        low_priority();
        return write(todo, nullptr);
      }, std::move(jobs));
    } else {
      pending->live = std::make_shared<checkpoint::LiveHandOff>(std::move(jobs), std::exchange(r.handoff_spare, {}));
      // SCHED_IDLE only where the compute threads sleep when they wait (OMP_WAIT_POLICY=PASSIVE,
      // as openlm sets it on Debian's LibTorch): threads that spin (libgomp's default, the torch
      // 2.x wheel) leave an idle-class writer no cycles until the trainer waits for it, measured
      // as 3.4-6.3 s for a 755 MB write that takes 1.2-1.5 s at normal priority.
      const char* policy = std::getenv("OMP_WAIT_POLICY");
      const bool passive = policy && ::strcasecmp(policy, "passive") == 0;
      pending->files = std::async(std::launch::async, [write, low_priority, passive, live = pending->live] {
        if (passive) low_priority();
        return write(live->files(), live.get());
      });
    }
    r.pending = std::move(pending);
  } else {
    pending->files = std::async(std::launch::deferred, [write, todo = std::move(jobs)] { return write(todo, nullptr); });
    r.pending = std::move(pending);
    finish_pending_save(r);
  }
}

PendingSave::~PendingSave() {
  if (live) live->abandon();
}

void poll_pending_save(Run& r) {
  if (!r.pending) return;
  bool ready = r.pending->files.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  if (r.comm) ready = r.comm->all_reduce_scalar(ready ? 1.0 : 0.0, parallel::ReduceOp::Min) > 0;
  if (ready) commit_pending(r);
}

void finish_pending_save(Run& r) {
  if (r.pending) commit_pending(r);
}

void prepare_live_saves(Run& r) {
  const CheckpointConfig& c = r.cfg.checkpoint;
  if (!c.async || r.device.is_cuda() || c.every_steps <= 0 || c.every_steps >= r.total) return;
  r.handoff_spare = checkpoint::LiveHandOff::buffers_for(state_files(r, nullptr));
}

void wait_for_live_save(Run& r) {
  if (!r.pending || !r.pending->live) return;
  if (r.pending->files.wait_for(std::chrono::seconds(0)) == std::future_status::ready) return;  // written
  r.pending->live->release();  // committed later by a poll
}

void resume_run(Run& r) {
  if (r.cfg.resume.empty()) return;
  nlohmann::json meta;
  std::vector<std::pair<std::string, std::string>> failed;
  std::string dir = agreed_checkpoint(r, checkpoint::checkpoint_candidates(r.cfg.run_dir, r.cfg.resume),
                                      r.cfg.resume != "latest", meta, &failed);
  if (dir.empty() && !failed.empty()) {
    // Checkpoints exist but none verifies: starting from step 0 would silently throw the run away
    // and overwrite them. Stop before anything is written under checkpoints/.
    throw DataError(
        "resume=latest: none of the " + std::to_string(failed.size()) + " checkpoint(s) in " +
        (stdfs::path(r.cfg.run_dir) / "checkpoints").string() +
        " passes verification, so there is nothing to resume from; refusing to start from step 0 over them "
        "(they are left untouched):" +
        failure_list(failed) +
        "\nTo start afresh deliberately, train into another run directory (--run-dir DIR) or move these "
        "checkpoints out of the way first; to resume, restore an intact copy of one of them.");
  }
  if (dir.empty()) {
    log::info("resume: no checkpoint in {} yet, starting from scratch", r.cfg.run_dir);
    return;
  }
  // The LR schedule is a function of (step, total): resuming with another total makes the learning
  // rate jump at the resumed step. Refused before anything is changed, unless the recipe allows it.
  const int64_t saved_total = meta.contains("lr_schedule") ? meta["lr_schedule"].value("total_steps", int64_t{0}) : 0;
  if (saved_total > 0 && saved_total != r.total) {
    const std::string saved = std::to_string(saved_total), now = std::to_string(r.total);
    if (!r.cfg.schedule.allow_change)
      throw ConfigError(r.cfg.source_file, "max_steps", 0,
                        "resuming " + dir + ", whose learning-rate schedule spans " + saved +
                            " steps, with a run of " + now +
                            " steps would make the learning rate jump at the resumed step (step " +
                            std::to_string(meta.value("step", int64_t{0})) + "). Resume with --max-steps " + saved +
                            " (use --stop-at-step K to end earlier without changing the schedule), or pass --set "
                            "schedule.allow_change=true to change the schedule's length deliberately");
    if (r.env.rank == 0)
      log::warn("resume: the learning-rate schedule now spans {} steps instead of the checkpoint's {} "
                "(schedule.allow_change: true); the learning rate changes at step {}",
                now, saved, meta.value("step", int64_t{0}));
  }
  r.resumed_from = dir;
  // Newer checkpoints that failed verification are moved aside (renamed, never deleted), so that
  // retention neither keeps them in place of good ones nor deletes the user's data, and a later
  // save of the same step does not replace them.
  if (r.env.rank == 0)
    for (auto& [bad, why] : failed) {
      try {
        std::string to = checkpoint::set_aside_checkpoint(bad);
        log::warn("resume: moved the checkpoint that failed verification aside: {} -> {}", bad, to);
      } catch (const std::exception& e) {
        log::warn("resume: could not move {} aside ({}); it stays in place", bad, e.what());
      }
    }
  load_state(r, dir, meta, /*optimizer=*/true);
  r.data->restore(meta.at("data_state"));
  r.start = meta.at("step").get<int64_t>();
  r.tokens_seen = meta.value("tokens_seen", int64_t{0});
  restore_rng(r, dir, meta);
  int saved_world = meta.value("world_size", 1);
  log::info("resumed from {} at step {}{}", dir, r.start,
            saved_world != r.env.world_size
                ? fmt::format(" (resharded from {} to {} ranks)", saved_world, r.env.world_size)
                : std::string());
}

void init_full_state(Run& r, const std::string& source) {
  nlohmann::json meta;
  const bool checkpoint_dir = stdfs::exists(stdfs::path(source) / "metadata.json");
  std::vector<std::pair<std::string, std::string>> failed;
  std::string dir = agreed_checkpoint(
      r, checkpoint::checkpoint_candidates(source, checkpoint_dir ? source : "latest"), checkpoint_dir, meta, &failed);
  if (dir.empty())
    throw ConfigError(r.cfg.source_file, "init_from", 0,
                      "'" + source + "' holds no complete native checkpoint (init_from_mode: full needs one)" +
                          (failed.empty() ? std::string() : "; none of its checkpoints verifies:" + failure_list(failed)));
  load_state(r, dir, meta, /*optimizer=*/true);
  r.start = meta.at("step").get<int64_t>();
  r.tokens_seen = meta.value("tokens_seen", int64_t{0});
  log::info("initialised weights, optimizer state and schedule position (step {}) from {}", r.start, dir);
}

}  // namespace openlm
