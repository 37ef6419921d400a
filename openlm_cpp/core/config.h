#pragma once
/// Plain configuration structs, one per component. Built in code with designated initializers, or
/// from YAML by the ONE recipe parser (core/recipe.h). No torch here. Every key is documented in
/// docs/RECIPES.md; keys are named after OpenLM's command-line flags where one exists.
#include <cstdint>
#include <string>
#include <vector>

namespace openlm {

/// The OpenLM transformer's shape and architecture switches (docs/MODEL.md).
struct ModelConfig {
  std::string name;                 ///< registry name, e.g. "open_lm_1b" ("" for inline configs)
  int64_t dim = 0;                  ///< model width d (OpenLM's JSON calls it hidden_dim)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;           ///< grouped-query attention; 0 means n_heads (OpenLM has no GQA)
  int64_t seq_len = 2048;
  int64_t vocab_size = 50432;
  std::string norm_type = "default_layer_norm";  ///< OpenLM's command-line default
  double norm_eps = 1e-5;
  bool qk_norm = false;
  std::string positional_embedding_type = "rotary";  ///< rotary | llama_rotary | head_rotary | none
  std::string ffn_type = "swiglu";                   ///< swiglu | swiglu_torch | gelu
  bool weight_tying = false;
  bool post_embed_norm = false;
  double rope_theta = 10000.0;
  int64_t ffn_hidden = 0;           ///< 0 = OpenLM's rule (256*ceil(int(8d/3)/256), or 4d for gelu)

  int64_t head_dim() const { return n_heads > 0 ? dim / n_heads : 0; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t attn_width() const { return n_heads * head_dim(); }      ///< A = H*hd (480 for 87m)
  int64_t kv_width() const { return kv_heads() * head_dim(); }
  int64_t hidden_dim() const;       ///< resolved FFN hidden width
};

struct OptimConfig {
  double lr = 3e-3;
  double wd = 0.033;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  bool wd_exclude_norms_biases_embeddings = false;  ///< OpenLM decays every parameter
  double grad_clip_norm = 1.0;                      ///< <= 0 disables clipping
  double z_loss = 0.0;                              ///< coefficient of mean(logsumexp^2)
};

struct ScheduleConfig {
  std::string lr_scheduler = "cosine";  ///< cosine | const | wsd (warmup-stable-decay)
  int64_t warmup = 0;
  double lr_cooldown_end = 3e-5;
  double force_min_lr = 0.0;
  double cooldown_fraction = 0.2;  ///< wsd: last fraction of the steps decays linearly to lr_cooldown_end
  bool allow_change = false;       ///< resume may change the steps the schedule spans (logged); else refused
};

struct BatchConfig {
  int64_t global_batch_size = 0;  ///< sequences per optimizer step, all ranks together
  int64_t micro_batch_size = 0;   ///< sequences per forward/backward on one rank
};

/// One data source: a manifest.jsonl (OpenLM tar shards or native shards) with a mixing weight.
struct DataSourceConfig {
  std::string path;
  double weight = 1.0;
};

struct DataConfig {
  std::vector<DataSourceConfig> manifests;
  bool default_corpus = false;         ///< use the embedded default corpus (built on first use)
  bool replacement = false;            ///< sample with replacement (default: without, like OpenLM)
  std::string on_epoch_end = "next_epoch";  ///< next_epoch (reshuffle with seed+epoch) | stop
  bool skip_corrupt = false;           ///< skip and count bad records instead of failing
  int64_t num_workers = 2;             ///< background read/decode threads
  int64_t prefetch = 8;                ///< bounded queue depth in micro-batches
  std::string instructions;            ///< JSONL instruction data (fine-tuning); "" = pretraining data
  std::string prompt_field = "prompt";      ///< JSON field holding a record's prompt
  std::string response_field = "response";  ///< JSON field holding a record's response
};

struct ParallelConfig {
  std::string strategy = "no_shard";  ///< full_shard | shard_grad_op | no_shard | hybrid_shard
  int64_t shard_group_size = 0;       ///< hybrid_shard: ranks per shard group (0 = local world size)
  std::string reduce_dtype = "fp32";  ///< fp32 | bf16 (bf16 only on NCCL)
  double timeout_s = 300;             ///< collective / rendezvous timeout
};

struct CheckpointConfig {
  int64_t every_steps = 0;  ///< 0 = only at the end (and on SIGTERM/SIGUSR1)
  int64_t keep_last = 2;
  int64_t keep_every = 0;   ///< additionally keep every N-th step forever (0 = off)
  bool async = false;
};

struct LoggingConfig {
  int64_t every_steps = 10;
  bool tensorboard = true;
  int64_t save_weights_every = 0;  ///< write model.safetensors every N steps (0 = only at the end)
  double peak_tflops = 0;          ///< per-device peak for MFU; 0 = auto (989 on CUDA, none on CPU)
};

struct TokenizerConfig {
  std::string type = "sentencepiece";  ///< sentencepiece | bpe (tokenizer.json)
  std::string path;                    ///< model file; "" = none (token ids only)
};

struct GenerateConfig {
  std::string prompt;             ///< text sampled from at the end of training ("" = skip)
  int64_t max_new_tokens = 48;
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 1.0;
};

/// One held-out source evaluated during training (OpenLM's --val-data).
struct ValSourceConfig {
  std::string name;  ///< label in metrics ("source"); defaults to the file's stem
  std::string path;  ///< manifest.jsonl, a token file (ids, one sequence per line) or "default_corpus:heldout"
};

/// The eval.val_data path that names the default corpus's held-out split, and the prefix every
/// such default-corpus source has (any other value of that form is refused).
inline constexpr const char* kDefaultCorpusPrefix = "default_corpus:";
inline constexpr const char* kDefaultCorpusHeldout = "default_corpus:heldout";
inline bool is_default_corpus_source(const std::string& path) { return path.rfind(kDefaultCorpusPrefix, 0) == 0; }

/// Validation during training: every `every_steps` steps and once at the end, the mean next-token
/// loss of each source's first `max_sequences` sequences (all ranks share the work; the result does
/// not depend on world size or strategy and the training trajectory is untouched).
struct EvalConfig {
  std::vector<ValSourceConfig> val_data;
  int64_t every_steps = 0;     ///< 0 = only the final evaluation
  int64_t max_sequences = 0;   ///< per source; 0 = all
};

/// A complete train recipe (recipes/train/*.yaml).
struct TrainConfig {
  std::string source_file;  ///< recipe path (for messages)
  ModelConfig model;
  TokenizerConfig tokenizer;
  DataConfig data;
  BatchConfig batch;
  OptimConfig optim;
  ScheduleConfig schedule;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  GenerateConfig generate;
  EvalConfig eval;
  /// Weight averages kept beside the trained weights (OpenLM's --averagers): "ema_<decay>" (e.g.
  /// ema_0.999) and "poly_<eta>" (polynomial-decay average, e.g. poly_8). Saved with checkpoints.
  std::vector<std::string> averagers;
  std::string precision = "fp32";  ///< fp32 | amp_bfloat16 | pure_bf16
  bool grad_checkpointing = false;
  /// Selective activation checkpointing: every N-th block (1 = all) ...
  int64_t grad_checkpointing_every = 1;
  /// ... whole blocks ("block") or only their attention sublayer ("attention").
  std::string grad_checkpointing_scope = "block";
  uint64_t seed = 124;
  int64_t max_steps = 0;           ///< optimizer steps the schedule spans
  int64_t train_num_tokens = 0;    ///< alternative to max_steps: tokens / (global batch * seq_len)
  std::string run_dir = "runs/default";
  std::string resume;              ///< "" | latest | path to a checkpoint directory
  std::string init_from;           ///< "" | native checkpoint | HF directory
  std::string init_from_mode = "weights";  ///< weights (fresh optimizer + schedule) | full (native only)

  /// Not a recipe key: whether the train recipe itself (its `model:` mapping or `--set
  /// model.vocab_size`) wrote model.vocab_size, as opposed to the default or a named model
  /// recipe's value. When it did not and the run has a tokenizer, training takes the tokenizer's
  /// vocabulary rounded up to a multiple of 256 (docs/RECIPES.md). Configs built in code count as set.
  bool vocab_size_set = true;
  /// Not a recipe key: the recipe has `init_from` and no `model:`; the trainer takes the model from
  /// the source (its config.json, checkpoint metadata or Hugging Face config).
  bool model_from_init = false;
};

}  // namespace openlm
