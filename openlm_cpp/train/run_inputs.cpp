// What a run checks and fills in before anything is built or written: the run directory it
// claims, its inputs (default corpus, init_from's model, paths that must exist), the tokenizer's
// agreement with the model, the memory it needs, and init_from weights.
#include <ATen/ATen.h>
#ifdef OPENLM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <filesystem>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/default_corpus.h"
#include "openlm_cpp/train/inference.h"
#include "openlm_cpp/train/run_state.h"

namespace stdfs = std::filesystem;

namespace openlm {
namespace {

/// What a run writes into its run directory: any of these present means the directory holds a run.
const char* const kRunEntries[] = {"config.json", "metrics.jsonl", "model.safetensors", "checkpoints", "tensorboard"};

std::vector<std::string> run_entries_in(const std::string& dir) {
  std::vector<std::string> found;
  for (const char* e : kRunEntries) {
    std::error_code ec;
    const auto st = stdfs::symlink_status(stdfs::path(dir) / e, ec);
    if (!ec && st.type() != stdfs::file_type::not_found) found.push_back(e);
  }
  return found;
}

/// An input a recipe names must exist; the message names the key and says where relative paths
/// resolve (recipe.cpp made them absolute: docs/RECIPES.md, "Relative paths").
void require_input(const std::string& path, const std::string& key, const TrainConfig& cfg) {
  if (path.empty() || stdfs::exists(path)) return;
  throw ConfigError(cfg.source_file, key, 0,
                    "'" + path + "' does not exist (relative paths in a recipe file resolve against the recipe's "
                    "folder, those given with --set against the working directory)");
}

}  // namespace

/// Before anything is written: a run directory holding another run's files is refused unless the
/// run resumes (`resume:` set: the same command line serves the first start and every restart) or
/// `overwrite` is given, which moves those files into <run_dir>/previous-<n>/ (first free n).
/// Multi-rank runs decide consistently without a collective: every rank checks the same files
/// before it joins the rendezvous, and no rank writes into the run directory before the rendezvous
/// has gathered every rank; only rank 0 moves files aside, and under `overwrite` no rank refuses.
void claim_run_dir(const TrainConfig& cfg, const DistEnv& env, bool overwrite) {
  if (overwrite && !cfg.resume.empty())
    throw ConfigError("--overwrite", "resume", 0,
                      "--overwrite starts a new run after moving the old one aside, but this run resumes (resume: " +
                          cfg.resume + "); a restart would move aside the run it should continue. Drop one of them "
                          "(--set resume= clears the recipe's resume)");
  if (!cfg.resume.empty()) return;
  const std::vector<std::string> found = run_entries_in(cfg.run_dir);
  if (found.empty()) return;
  std::string list;
  for (const auto& e : found) list += (list.empty() ? "" : ", ") + e + (e == "checkpoints" || e == "tensorboard" ? "/" : "");
  if (!overwrite)
    throw Error("run directory '" + cfg.run_dir + "' already holds another run's files (" + list +
                "); refusing to train over them (nothing was written). To continue that run, resume it: "
                "--set resume=latest (recipe key `resume: latest`); to keep it and start a new run, pass another "
                "--run-dir; to start afresh here, pass --overwrite (moves the old files into " +
                (stdfs::path(cfg.run_dir) / "previous-<n>").string() + "/).");
  if (env.rank != 0) return;
  stdfs::path aside;
  for (int n = 1;; ++n) {
    aside = stdfs::path(cfg.run_dir) / ("previous-" + std::to_string(n));
    std::error_code ec;
    if (stdfs::symlink_status(aside, ec).type() == stdfs::file_type::not_found) break;
  }
  stdfs::create_directory(aside);
  for (const auto& e : found) {
    std::error_code ec;
    stdfs::rename(stdfs::path(cfg.run_dir) / e, aside / e, ec);
    if (ec) throw IoError("--overwrite: cannot move '" + (stdfs::path(cfg.run_dir) / e).string() + "' to '" +
                          (aside / e).string() + "': " + ec.message());
  }
  openlm::fs::fsync_dir(cfg.run_dir);
  log::warn("--overwrite: moved the previous run's {} into {}/", list, aside.string());
}

/// Loads weights from a safetensors file / run dir / checkpoint dir into the model.
void load_weights_into(Transformer& m, const std::string& src) {
  if (checkpoint::is_hf_dir(src)) {  // init_from: <Hugging Face directory> (checkpoint/hf_import.h)
    auto im = checkpoint::load_hf(src);
    std::string diff = checkpoint::architecture_difference(m.config(), im.model);
    if (!diff.empty())
      throw ConfigError(src, "init_from", 0, "the Hugging Face model's architecture differs from the recipe's model (" + diff + ")");
    m.load_named(NamedTensors(im.tensors.begin(), im.tensors.end()));
    return;
  }
  auto tensors = checkpoint::load_model_weights(src);
  NamedTensors named(tensors.begin(), tensors.end());
  try {
    m.load_named(named);
  } catch (const DataError& e) {
    throw DataError("init_from '" + src + "': " + e.what());
  }
}

/// Fills in the default corpus and the model of `init_from` (when the recipe has no `model:`),
/// and checks that every input exists, so the resolved config works anywhere.
TrainConfig resolve_inputs(TrainConfig cfg, std::string& heldout_manifest) {
  if (cfg.model_from_init) {
    require_input(cfg.init_from, "init_from", cfg);
    cfg.model = model_config_of(cfg.init_from);
    validate_model(cfg.model, cfg.init_from);
    cfg.model_from_init = false;
    cfg.vocab_size_set = true;  // the source's embedding rows
    log::info("model: {} (d {}, {} layers) from init_from {}", cfg.model.name.empty() ? "unnamed" : cfg.model.name,
              cfg.model.dim, cfg.model.n_layers, cfg.init_from);
  }
  if (cfg.data.default_corpus) {
    auto dc = ensure_default_corpus(cfg.model.seq_len, cfg.model.vocab_size);
    cfg.data.manifests = {{dc.manifest, 1.0}};
    if (cfg.tokenizer.path.empty()) cfg.tokenizer.path = dc.tokenizer;
    cfg.data.default_corpus = false;
    heldout_manifest = dc.heldout;
  }
  // Configs built in code (tests, benchmarks) may carry relative paths: the working directory's.
  auto absolute = [](std::string& p) {
    if (!p.empty() && !stdfs::path(p).is_absolute()) p = stdfs::absolute(p).lexically_normal().string();
  };
  for (std::size_t i = 0; i < cfg.data.manifests.size(); ++i) {
    absolute(cfg.data.manifests[i].path);
    require_input(cfg.data.manifests[i].path, "data.manifests[" + std::to_string(i) + "].path", cfg);
  }
  absolute(cfg.data.instructions);
  require_input(cfg.data.instructions, "data.instructions", cfg);
  absolute(cfg.tokenizer.path);
  require_input(cfg.tokenizer.path, "tokenizer.path", cfg);
  absolute(cfg.init_from);
  require_input(cfg.init_from, "init_from", cfg);
  for (std::size_t i = 0; i < cfg.eval.val_data.size(); ++i) {
    auto& v = cfg.eval.val_data[i];
    if (is_default_corpus_source(v.path)) continue;
    absolute(v.path);
    require_input(v.path, "eval.val_data[" + std::to_string(i) + "].path", cfg);
  }
  return cfg;
}

/// Tokenizer and model must agree before anything is built (docs/RECIPES.md, "Tokenizer, data and
/// model"): model.vocab_size not written by the train recipe takes the tokenizer's vocabulary
/// rounded up to a multiple of 256 (GPT-NeoX's 50,277 -> OpenLM's 50,432); one written explicitly
/// must cover the tokenizer's ids. Returns the tokenizer's identity (for the data shards), "" when
/// the run has no tokenizer.
std::string reconcile_tokenizer(TrainConfig& cfg) {
  if (cfg.tokenizer.path.empty()) return "";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(cfg.tokenizer.type, cfg.tokenizer.path);
  const int64_t tv = tok->vocab_size();
  const std::string tv_s = std::to_string(tv), mv_s = std::to_string(cfg.model.vocab_size);
  if (!cfg.vocab_size_set) {
    const int64_t v = (tv + 255) / 256 * 256;
    if (v != cfg.model.vocab_size)
      log::info("model.vocab_size: {} from the tokenizer {} ({} ids, rounded up to a multiple of 256; the model's "
                "default was {}; set model.vocab_size to choose another)",
                v, cfg.tokenizer.path, tv, cfg.model.vocab_size);
    cfg.model.vocab_size = v;
    cfg.vocab_size_set = true;
  } else if (cfg.model.vocab_size < tv) {
    throw ConfigError(cfg.source_file, "model.vocab_size", 0,
                      "model.vocab_size " + mv_s + " is smaller than the vocabulary of tokenizer.path '" +
                          cfg.tokenizer.path + "' (" + tv_s + " ids): its ids " + mv_s + ".." +
                          std::to_string(tv - 1) + " would have no embedding row. Set model.vocab_size >= " + tv_s +
                          " (or leave it out to take the tokenizer's size rounded up to a multiple of 256), or use "
                          "the tokenizer the model was meant for");
  }
  return tok->id();
}

/// Refuses, before anything is allocated, a run whose estimated memory (model_stats.h: weights,
/// gradients, AdamW state, activations, logits) cannot fit: on CUDA the device's memory per rank;
/// on the host (always: every rank first builds the whole fp32 model there) the estimate times the
/// ranks of this node against host_memory_limit(). Names the recipe.
void check_training_memory(const TrainConfig& cfg, const DistEnv& env, const at::Device& device) {
  const ParamCounts counts = check_model_size(cfg.model, cfg.source_file);
  const std::string strategy = env.world_size > 1 ? cfg.parallel.strategy : "no_shard";
  const MemoryEstimate est = estimate_memory(cfg.model, cfg.precision, cfg.batch.micro_batch_size,
                                             /*checkpointing every block: the estimate's lower bound; selective runs are estimated without*/
                                             cfg.grad_checkpointing && cfg.grad_checkpointing_every == 1 &&
                                                 cfg.grad_checkpointing_scope == "block",
                                             env.world_size, strategy,
                                             cfg.parallel.shard_group_size);
  const std::string setup = cfg.precision + ", micro-batch " + std::to_string(cfg.batch.micro_batch_size) + ", " +
                            std::to_string(env.world_size) + " rank" + (env.world_size == 1 ? "" : "s") +
                            (env.world_size > 1 ? " " + strategy : std::string());
  const double full_fp32 = 4.0 * static_cast<double>(counts.total);
  const double ranks_here = std::max(1, env.local_world_size);
  if (device.is_cuda()) {
#ifdef OPENLM_WITH_CUDA
    const auto* prop = at::cuda::getDeviceProperties(device.index());
    require_memory(cfg.model, est.total(), "training per device (" + setup + ")", cfg.source_file,
                   {static_cast<double>(prop->totalGlobalMem), "CUDA device " + std::to_string(device.index()) + " memory"});
#endif
    require_memory(cfg.model, full_fp32 * ranks_here,
                   "building its fp32 weights on the host (" + std::to_string(env.local_world_size) + " rank(s) on this node)",
                   cfg.source_file, host_memory_limit());
  } else {
    // Async checkpoints keep a copy of this rank's weights and moments to write from (train/checkpointing.cpp).
    const bool async_copy = cfg.checkpoint.async && cfg.checkpoint.every_steps > 0;
    const double copy = async_copy ? est.params + est.optimizer : 0.0;
    require_memory(cfg.model, (std::max(est.total(), full_fp32) + copy) * ranks_here,
                   "training (" + setup + (async_copy ? ", with the async checkpoints' copy of the state" : "") +
                       (env.local_world_size > 1 ? ", " + std::to_string(env.local_world_size) + " of them on this node"
                                                 : std::string()) + ")",
                   cfg.source_file, host_memory_limit());
  }
}

}  // namespace openlm
