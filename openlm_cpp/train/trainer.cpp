#include "openlm_cpp/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "data_loader/batch_source.h"
#include "data_loader/instruction_source.h"
#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/optim/schedule.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/fsdp.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/generate.h"
#include "openlm_cpp/train/metrics.h"
#include "openlm_cpp/train/run_state.h"

namespace stdfs = std::filesystem;

namespace openlm {
namespace {

std::atomic<int> g_signal{0};
extern "C" void on_preempt(int sig) { g_signal = sig; }
/// The first SIGINT (Ctrl-C) stops like SIGTERM: every rank finishes its step, saves a checkpoint
/// and exits. The handler is installed with SA_RESETHAND, so a second SIGINT ends the process at
/// once. write(2) is async-signal-safe: the user sees at once that the Ctrl-C was taken.
extern "C" void on_interrupt(int sig) {
  g_signal = sig;
  static const char msg[] =
      "openlm: SIGINT: finishing this step, then saving a checkpoint and stopping (Ctrl-C again to exit at once "
      "without it)\n";
  (void)!::write(2, msg, sizeof msg - 1);
}

std::string signal_label(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(sig);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool is_amp(const std::string& p) { return p == "amp_bfloat16" || p == "amp_bf16"; }

Run build(const TrainConfig& cfg_in) {
  Run r;
  r.cfg = resolve_inputs(cfg_in, r.heldout_manifest);
  const std::string tokenizer_id = reconcile_tokenizer(r.cfg);  // before the model's size is used
  const TrainConfig& cfg = r.cfg;
  r.env = detect_dist_env();
  if (r.env.world_size > 1) log::set_rank(r.env.rank);
  r.accum = accumulation_steps(cfg, r.env.world_size);
  r.total = total_steps(cfg);
  if (at::hasCUDA()) r.device = at::Device(at::kCUDA, r.env.local_rank);
  check_training_memory(cfg, r.env, r.device);

  r.model = std::make_unique<Transformer>(cfg.model, cfg.seed);
  if (!cfg.init_from.empty() && cfg.init_from_mode != "full") {
    load_weights_into(*r.model, cfg.init_from);
    log::info("initialised weights from {}", cfg.init_from);
  }
  at::ScalarType pdt = cfg.precision == "pure_bf16" ? at::kBFloat16 : at::kFloat;
  r.model->to(r.device, pdt);
  if (is_amp(cfg.precision)) r.model->set_compute_dtype(at::kBFloat16);
  r.model->set_grad_checkpointing(cfg.grad_checkpointing, cfg.grad_checkpointing_every,
                                  cfg.grad_checkpointing_scope == "attention");

  const bool exclude = cfg.optim.wd_exclude_norms_biases_embeddings;
  std::vector<AdamW::Param> params;
  r.comm = parallel::make_communicator(r.env, cfg.parallel);  // a single-process one for one rank
  if (r.env.world_size > 1) {
    r.sharded = std::make_unique<parallel::ShardedModel>(*r.model, *r.comm, cfg.parallel, pdt,
                                                         exclude ? &is_no_decay_name : nullptr);
    auto names = r.sharded->shard_names();
    auto masters = r.sharded->masters();
    auto masks = r.sharded->decay_masks();
    for (std::size_t i = 0; i < names.size(); ++i) params.push_back({names[i], masters[i], true, masks[i]});
  } else {
    for (auto& [n, t] : r.model->named_parameters()) {
      bool dup = false;
      for (auto& p : params) dup |= p.value.is_same(t);
      if (!dup) params.push_back({n, t, !(exclude && is_no_decay_name(n)), at::Tensor()});
    }
  }
  r.opt = std::make_unique<AdamW>(std::move(params), cfg.optim);
  if (!cfg.eval.val_data.empty())  // read (and checked) before step 1
    r.validator = std::make_unique<Validator>(cfg.eval, r.heldout_manifest, cfg.model.seq_len, cfg.model.vocab_size,
                                              cfg.batch.micro_batch_size);

  data::LoaderOptions lo;
  lo.cfg = cfg.data;
  lo.base_dir = stdfs::path(cfg.source_file).parent_path().string();
  lo.seq_len = cfg.model.seq_len;
  lo.vocab_size = cfg.model.vocab_size;
  lo.global_batch_size = cfg.batch.global_batch_size;
  lo.micro_batch_size = cfg.batch.micro_batch_size;
  lo.rank = r.env.rank;
  lo.world_size = r.env.world_size;
  lo.seed = cfg.seed;
  lo.tokenizer_id = tokenizer_id;
  lo.tokenizer_label = "tokenizer.path '" + cfg.tokenizer.path + "'";
  if (!cfg.data.instructions.empty()) {  // fine-tuning: records tokenised here, loss masked on prompts
    std::shared_ptr<const Tokenizer> tok = load_tokenizer(cfg.tokenizer.type, cfg.tokenizer.path);
    r.data = data::make_instruction_source(lo, [tok](const std::string& s) { return tok->encode(s); }, tok->eos_id());
    return r;
  }
  if (cfg.data.manifests.empty())
    throw ConfigError(cfg.source_file, "data.manifests", 0, "missing: list at least one manifest.jsonl");
  r.data = data::make_batch_source(lo);
  return r;
}

std::string sample_text(Run& r, const checkpoint::NamedTensors& full) {
  const auto& g = r.cfg.generate;
  if (g.prompt.empty() || r.cfg.tokenizer.path.empty() || g.max_new_tokens == 0) return "";
  auto tok = load_tokenizer(r.cfg.tokenizer.type, r.cfg.tokenizer.path);
  auto ids32 = tok->encode(g.prompt);
  std::vector<int64_t> ids(ids32.begin(), ids32.end());
  SampleOptions so;
  so.max_new_tokens = g.max_new_tokens;
  so.temperature = g.temperature;
  so.top_k = g.top_k;
  so.top_p = g.top_p;
  so.seed = r.cfg.seed;
  so.stop_token = tok->eos_id();
  // A sharded model's parameters live in shards: sample from a local copy of the full weights.
  std::unique_ptr<Transformer> local;
  Transformer* m = r.model.get();
  if (r.sharded) {
    local = std::make_unique<Transformer>(r.cfg.model, 0);
    local->load_named(full);  // gathered by every rank before; no collective here
    m = local.get();
  }
  auto out = generate(*m, ids, so);
  std::vector<int32_t> o32(out.begin(), out.end());
  return tok->decode(o32);
}

/// Bytes this rank holds for parameters, gradients and optimizer state, and its peak RSS.
void log_memory(Run& r) {
  int64_t params = 0, grads = 0, opt = r.opt->state_bytes();
  if (r.sharded) {
    auto m = r.sharded->memory(opt);
    params = m.params;
    grads = m.grads;
  } else {
    for (auto& p : r.model->parameters()) {
      params += p.nbytes();
      grads += p.nbytes();  // one gradient per parameter after the first backward
    }
  }
  r.state_bytes = params + grads + opt;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  log::info("memory: params {:.1f} MiB, grads {:.1f} MiB, optimizer {:.1f} MiB (state {:.1f} MiB); peak RSS {:.1f} MiB",
            params / 1048576.0, grads / 1048576.0, opt / 1048576.0, (params + grads + opt) / 1048576.0,
            static_cast<double>(ru.ru_maxrss) / 1024.0);
}

/// One console/metrics record per step (the sinks decide what to show).
void log_step(Run& r, const StepStats& s, int64_t step, double lr, double t0, double wait0, double t_start,
              int64_t last) {
  const TrainConfig& cfg = r.cfg;
  const double dt = now_s() - t0;
  const double tps = static_cast<double>(cfg.batch.global_batch_size * cfg.model.seq_len) / dt;
  nlohmann::json m = {{"step", step}, {"loss", s.loss}, {"lr", lr}, {"grad_norm", s.grad_norm},
                      {"tokens_per_s", tps}, {"tokens", r.tokens_seen}, {"step_time_s", dt},
                      {"data_wait_s", r.data->wait_seconds() - wait0},
                      {"elapsed_s", now_s() - t_start},
                      {"eta_s", dt * static_cast<double>(last - step)}};
  if (cfg.optim.z_loss > 0) m["z_loss"] = s.z_loss;
  m["state_bytes_per_rank"] = r.state_bytes;
  const double peak = cfg.logging.peak_tflops > 0 ? cfg.logging.peak_tflops : (r.device.is_cuda() ? 989.0 : 0.0);
  if (peak > 0) m["mfu"] = tps / static_cast<double>(r.env.world_size) * flops_per_token(cfg.model) / (peak * 1e12);
  r.sinks.log(m);
}

/// Signal handlers for the run's duration: SIGTERM/SIGUSR1 (preemption) and the first SIGINT make
/// every rank checkpoint and stop at the next step boundary.
struct StopSignals {
  void (*prev_term)(int), (*prev_usr1)(int);
  struct sigaction prev_int {};
  StopSignals() {
    prev_term = std::signal(SIGTERM, on_preempt);
    prev_usr1 = std::signal(SIGUSR1, on_preempt);
    struct sigaction int_action {};
    int_action.sa_handler = on_interrupt;
    sigemptyset(&int_action.sa_mask);
    int_action.sa_flags = SA_RESTART | SA_RESETHAND;  // a second SIGINT: the default action, at once
    ::sigaction(SIGINT, &int_action, &prev_int);
  }
  ~StopSignals() {
    std::signal(SIGTERM, prev_term);
    std::signal(SIGUSR1, prev_usr1);
    ::sigaction(SIGINT, &prev_int, nullptr);
  }
  /// The signal that reached any rank (0: none); collective.
  static int agreed(Run& r) { return static_cast<int>(r.comm->all_reduce_scalar(g_signal, parallel::ReduceOp::Max)); }
};

/// Opens the sinks and states what is trained.
void start_logging(Run& r, const TrainOptions& opt) {
  const TrainConfig& cfg = r.cfg;
  if (r.env.rank == 0) {
    r.sinks.add(make_jsonl_sink((stdfs::path(cfg.run_dir) / "metrics.jsonl").string(), r.start));
    if (!opt.quiet) r.sinks.add(make_console_sink(cfg.logging.every_steps, r.total));
    if (cfg.logging.tensorboard) r.sinks.add(make_tensorboard_sink((stdfs::path(cfg.run_dir) / "tensorboard").string()));
    const auto counts = count_params(cfg.model);
    log::info("model {}: {} params ({} non-embedding), {} steps x {} seqs x {} tokens, accumulation {}, {} on {}",
              cfg.model.name, counts.total, counts.non_embedding, r.total, cfg.batch.global_batch_size,
              cfg.model.seq_len, r.accum, cfg.precision, r.device.str());
    if (r.device.is_cpu()) {
      const char* policy = std::getenv("OMP_WAIT_POLICY");
      log::info("cpu: {} intra-op threads, OpenMP wait policy {}{}", at::get_num_threads(), policy ? policy : "default",
                std::getenv("OPENLM_SET_OMP_WAIT_POLICY") ? " (chosen by openlm: OpenBLAS keeps its own threads)" : "");
    }
  }
  log_memory(r);
}

/// The end of a run: final weights (and the averages') on rank 0, and the sample text.
void finish_run(Run& r, TrainResult& res, int64_t step) {
  finish_pending_save(r);
  const std::string weights = (stdfs::path(r.cfg.run_dir) / "model.safetensors").string();
  auto final_weights = full_weights(r);  // collective
  auto averages = full_averages(r);      // collective
  res.steps_done = step;
  if (r.env.rank != 0) return;
  checkpoint::save_safetensors(weights, final_weights);
  res.weights_path = weights;
  log::info("weights written to {}", weights);
  for (auto& [name, w] : averages) {
    const std::string path = (stdfs::path(r.cfg.run_dir) / ("model_" + name + ".safetensors")).string();
    checkpoint::save_safetensors(path, w);
    log::info("{} weights written to {}", name, path);
  }
  if (step >= r.total && g_signal == 0) {
    res.sample = sample_text(r, final_weights);
    if (!res.sample.empty()) log::info("sample: {}", res.sample);
  }
}

}  // namespace

TrainResult run_training(const TrainConfig& cfg_in, const TrainOptions& opt) {
  claim_run_dir(cfg_in, detect_dist_env(), opt.overwrite);  // before anything is built or written
  Run r = build(cfg_in);
  const TrainConfig& cfg = r.cfg;
  stdfs::create_directories(cfg.run_dir);
  if (!cfg.init_from.empty() && cfg.init_from_mode == "full") init_full_state(r, cfg.init_from);
  if (!cfg.averagers.empty()) {  // from the starting weights; resume_run replaces them with the checkpoint's
    std::vector<at::Tensor> live;
    for (auto& p : r.opt->params()) live.push_back(p.value);
    r.averages = std::make_unique<WeightAverages>(cfg.averagers, live);
  }
  resume_run(r);
  prepare_live_saves(r);
  // After resume: a resume that refuses (e.g. every checkpoint corrupt) leaves config.json as it was.
  if (r.env.rank == 0)
    openlm::fs::write_file_atomic((stdfs::path(cfg.run_dir) / "config.json").string(), to_json(cfg).dump(2) + "\n");
  const int64_t last = opt.stop_at_step > 0 ? std::min(opt.stop_at_step, r.total) : r.total;
  start_logging(r, opt);

  StopSignals signals;
  TrainResult res;
  res.run_dir = cfg.run_dir;
  const std::string weights = (stdfs::path(cfg.run_dir) / "model.safetensors").string();
  const double t_start = now_s();
  int64_t step = r.start;
  bool completed = true;  // false when stopped by a signal (no final evaluation then)
  MicroBatches mbs;
  r.model->train(true);
  while (step < last) {
    const double t0 = now_s(), wait0 = r.data->wait_seconds();
    const double lr = lr_at(cfg.schedule, cfg.optim.lr, step, r.total);
    if (!next_micro_batches(r, mbs)) {
      log::info("data exhausted after {} steps (data.on_epoch_end: stop)", step);
      break;
    }
    const StepStats s = train_step(r, mbs, lr);
    if (!std::isfinite(s.loss)) {
      // The update was skipped: the state is the one an async checkpoint still being written
      // holds, so it is finished and committed rather than lost with the run (every rank agrees:
      // the loss is all-reduced).
      finish_pending_save(r);
      throw Error("loss is " + std::to_string(s.loss) + " at step " + std::to_string(step + 1) +
                  "; stopping without writing weights (the last good ones on disk are kept: " + weights + ")");
    }
    ++step;
    r.tokens_seen += cfg.batch.global_batch_size * cfg.model.seq_len;
    if (r.averages) r.averages->update(step);
    log_step(r, s, step, lr, t0, wait0, t_start, last);
    res.last_loss = s.loss;
    if (cfg.eval.every_steps > 0 && step % cfg.eval.every_steps == 0 && step != r.total) run_validation(r, step);

    if (cfg.logging.save_weights_every > 0 && step % cfg.logging.save_weights_every == 0) {
      auto w = full_weights(r);  // collective
      if (r.env.rank == 0) checkpoint::save_safetensors(weights, w);
    }
    // A stop signal (SIGTERM, SIGUSR1, the first SIGINT) reaching any rank makes every rank
    // checkpoint and stop together, at this step boundary.
    const int stop_sig = StopSignals::agreed(r);
    const std::string ckpt_dir = (stdfs::path(cfg.run_dir) / "checkpoints" / ("step_" + std::to_string(step))).string();
    if (stop_sig != 0 && r.env.rank == 0)
      log::warn("{}: saving a checkpoint at step {} in {}", signal_label(stop_sig), step, ckpt_dir);
    if ((cfg.checkpoint.every_steps > 0 && step % cfg.checkpoint.every_steps == 0) || step == last || stop_sig != 0)
      save_run_checkpoint(r, step);
    else
      poll_pending_save(r);
    if (stop_sig != 0) {
      log::warn("{} (preemption signal): checkpoint saved at step {} ({}), exiting; the same command with "
                "--set resume=latest continues from there",
                signal_label(stop_sig), step, ckpt_dir);
      res.stopped_by_signal = stop_sig;
      completed = false;
      break;
    }
  }
  // The final evaluation: once the schedule is done or the data ran out (not after --stop-at-step
  // or a stop signal, which end the process early).
  if (completed && (step >= r.total || step < last)) run_validation(r, step);
  finish_run(r, res, step);
  r.comm->barrier();
  g_signal = 0;
  return res;
}

}  // namespace openlm
