// Validation of parsed recipes: every range and consistency rule, each failure naming the file,
// the dotted key and its line (through Origin). Parsing and dumping live in recipe.cpp.
#include <string>

#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/core/recipe_detail.h"

namespace openlm::detail {
namespace {

void one_of(const Origin& o, const std::string& key, const std::string& v,
            std::initializer_list<const char*> allowed) {
  std::string list;
  for (auto* a : allowed) {
    if (v == a) return;
    list += (list.empty() ? "" : " | ") + std::string(a);
  }
  o.fail(key, "invalid value '" + v + "' (expected " + list + ")");
}

/// A required positive integer: "missing required key" only when the recipe does not write it.
void positive(const Origin& o, const std::string& key, int64_t v) {
  if (v > 0) return;
  if (v == 0 && !o.lines.empty() && !o.present(key)) o.fail(key, "missing required key (must be > 0)");
  o.fail(key, "must be > 0 (got " + std::to_string(v) + ")");
}

}  // namespace

void validate_model_fields(const ModelConfig& m, const Origin& o, const std::string& p) {
  positive(o, p + "dim", m.dim);
  positive(o, p + "n_layers", m.n_layers);
  positive(o, p + "n_heads", m.n_heads);
  positive(o, p + "seq_len", m.seq_len);
  positive(o, p + "vocab_size", m.vocab_size);
  if (m.n_heads > m.dim) o.fail(p + "n_heads", "n_heads exceeds dim: head_dim = dim // n_heads would be 0");
  if (m.n_kv_heads < 0) o.fail(p + "n_kv_heads", "must be >= 0 (0 means n_heads)");
  if (m.n_kv_heads > 0 && m.n_heads % m.n_kv_heads != 0)
    o.fail(p + "n_kv_heads", "n_kv_heads must divide n_heads (" + std::to_string(m.n_heads) + ")");
  one_of(o, p + "norm_type", m.norm_type,
         {"default_layer_norm", "lp_layer_norm", "gain_only_lp_layer_norm", "gain_only_layer_norm",
          "no_wb_layer_norm", "rms_norm"});
  one_of(o, p + "positional_embedding_type", m.positional_embedding_type,
         {"rotary", "llama_rotary", "head_rotary", "none"});
  one_of(o, p + "ffn_type", m.ffn_type, {"swiglu", "swiglu_torch", "gelu"});
  if (m.positional_embedding_type != "none" && m.head_dim() % 2 != 0)
    o.fail(p + "positional_embedding_type", "rotary embeddings need an even head_dim (got " +
                                                std::to_string(m.head_dim()) + ")");
  if (!(m.norm_eps > 0)) o.fail(p + "norm_eps", "must be > 0");
  if (!(m.rope_theta > 0)) o.fail(p + "rope_theta", "must be > 0");
  if (m.ffn_hidden < 0) o.fail(p + "ffn_hidden", "must be >= 0 (0 = OpenLM's rule)");
}

void validate_train_fields(const TrainConfig& c, const Origin& o) {
  if (!c.model_from_init) validate_model_fields(c.model, o, "model.");  // else checked once read from init_from
  one_of(o, "precision", c.precision, {"fp32", "amp_bfloat16", "amp_bf16", "pure_bf16"});
  one_of(o, "schedule.lr_scheduler", c.schedule.lr_scheduler, {"cosine", "const", "wsd"});
  one_of(o, "parallel.strategy", c.parallel.strategy,
         {"full_shard", "shard_grad_op", "no_shard", "hybrid_shard"});
  one_of(o, "parallel.reduce_dtype", c.parallel.reduce_dtype, {"fp32", "bf16"});
  one_of(o, "init_from_mode", c.init_from_mode, {"weights", "full"});
  one_of(o, "grad_checkpointing_scope", c.grad_checkpointing_scope, {"block", "attention"});
  if (c.grad_checkpointing_every < 1) o.fail("grad_checkpointing_every", "must be >= 1 (1 = every block)");
  one_of(o, "data.on_epoch_end", c.data.on_epoch_end, {"next_epoch", "stop"});
  one_of(o, "tokenizer.type", c.tokenizer.type, {"sentencepiece", "bpe", "auto"});
  positive(o, "batch.global_batch_size", c.batch.global_batch_size);
  positive(o, "batch.micro_batch_size", c.batch.micro_batch_size);
  accumulation_steps(c, 1);
  if (c.max_steps < 0) o.fail("max_steps", "must be >= 0");
  if (c.train_num_tokens < 0) o.fail("train_num_tokens", "must be >= 0");
  if (c.max_steps == 0 && c.train_num_tokens == 0)
    o.fail("max_steps", "missing: set max_steps or train_num_tokens");
  if (c.max_steps > 0 && c.train_num_tokens > 0)
    o.fail(o.from_cli.count("max_steps") ? "max_steps" : "train_num_tokens",
           "max_steps (" + std::to_string(c.max_steps) + ") and train_num_tokens (" + std::to_string(c.train_num_tokens) +
               ") are both set; they are two ways of giving the length of the run: set one of them (the other 0)");
  int64_t steps = total_steps(c);
  if (steps <= 0) o.fail("train_num_tokens", "gives zero optimizer steps for this batch and seq_len");
  if (c.schedule.warmup < 0) o.fail("schedule.warmup", "must be >= 0");
  if (c.schedule.warmup > steps)
    o.fail("schedule.warmup", "warmup (" + std::to_string(c.schedule.warmup) +
                                  ") exceeds the total number of steps (" + std::to_string(steps) +
                                  "): lower schedule.warmup (--set schedule.warmup=N, N <= " + std::to_string(steps) +
                                  ") or raise " + (c.max_steps > 0 ? "max_steps (--max-steps)" : "train_num_tokens"));
  if (!(c.optim.lr > 0)) o.fail("optim.lr", "must be > 0");
  if (c.optim.wd < 0) o.fail("optim.wd", "must be >= 0");
  if (!(c.optim.beta1 >= 0 && c.optim.beta1 < 1)) o.fail("optim.beta1", "must be in [0, 1)");
  if (!(c.optim.beta2 >= 0 && c.optim.beta2 < 1)) o.fail("optim.beta2", "must be in [0, 1)");
  if (!(c.optim.eps > 0)) o.fail("optim.eps", "must be > 0");
  if (c.optim.z_loss < 0) o.fail("optim.z_loss", "must be >= 0");
  if (c.schedule.lr_cooldown_end < 0) o.fail("schedule.lr_cooldown_end", "must be >= 0");
  if (c.schedule.force_min_lr < 0) o.fail("schedule.force_min_lr", "must be >= 0");
  if (!(c.schedule.cooldown_fraction >= 0 && c.schedule.cooldown_fraction <= 1))
    o.fail("schedule.cooldown_fraction", "must be in [0, 1]");
  if (c.logging.every_steps <= 0) o.fail("logging.every_steps", "must be > 0");
  if (c.checkpoint.every_steps < 0) o.fail("checkpoint.every_steps", "must be >= 0");
  if (c.checkpoint.keep_last < 1) o.fail("checkpoint.keep_last", "must be >= 1");
  if (c.data.num_workers < 1) o.fail("data.num_workers", "must be >= 1");
  if (c.data.prefetch < 1) o.fail("data.prefetch", "must be >= 1");
  if (!c.data.instructions.empty()) {
    if (!c.data.manifests.empty())
      o.fail("data.instructions", "cannot be combined with data.manifests (fine-tuning reads only the instruction data)");
    if (c.data.default_corpus)
      o.fail("data.instructions", "cannot be combined with data.default_corpus: true");
    if (c.tokenizer.path.empty())
      o.fail("tokenizer.path", "missing: data.instructions needs a tokenizer to tokenise the records");
    if (c.data.prompt_field.empty()) o.fail("data.prompt_field", "must not be empty");
    if (c.data.response_field.empty()) o.fail("data.response_field", "must not be empty");
    if (c.data.prompt_field == c.data.response_field)
      o.fail("data.response_field", "must differ from data.prompt_field ('" + c.data.prompt_field + "')");
  } else if (c.data.manifests.empty() && !c.data.default_corpus) {
    o.fail("data.manifests", "missing: list at least one manifest.jsonl (or set data.default_corpus: true, "
                             "or data.instructions for fine-tuning)");
  }
  for (std::size_t i = 0; i < c.data.manifests.size(); ++i)
    if (!(c.data.manifests[i].weight > 0))
      o.fail("data.manifests[" + std::to_string(i) + "].weight", "must be > 0");
  if (c.parallel.shard_group_size < 0) o.fail("parallel.shard_group_size", "must be >= 0");
  if (!(c.parallel.timeout_s > 0)) o.fail("parallel.timeout_s", "must be > 0");
  if (c.generate.max_new_tokens < 0) o.fail("generate.max_new_tokens", "must be >= 0");
  if (c.generate.temperature < 0) o.fail("generate.temperature", "must be >= 0");
  if (c.generate.top_k < 0) o.fail("generate.top_k", "must be >= 0 (0 = off)");
  if (!(c.generate.top_p > 0 && c.generate.top_p <= 1)) o.fail("generate.top_p", "must be in (0, 1]");
  if (c.run_dir.empty()) o.fail("run_dir", "must not be empty");
  if (c.eval.every_steps < 0) o.fail("eval.every_steps", "must be >= 0 (0 = only at the end)");
  if (c.eval.max_sequences < 0) o.fail("eval.max_sequences", "must be >= 0 (0 = all)");
  for (std::size_t i = 0; i < c.eval.val_data.size(); ++i) {
    const auto& p = c.eval.val_data[i].path;
    if (is_default_corpus_source(p) && p != kDefaultCorpusHeldout)
      o.fail("eval.val_data[" + std::to_string(i) + "].path",
             "unknown default-corpus split '" + p + "' (the default corpus has default_corpus:heldout)");
  }
  for (std::size_t i = 0; i < c.averagers.size(); ++i) {
    const std::string key = "averagers[" + std::to_string(i) + "]", a = c.averagers[i];
    double v = -1;
    try {
      std::size_t pos = 0;
      if (a.rfind("ema_", 0) == 0 || a.rfind("poly_", 0) == 0) {
        const std::string num = a.substr(a.find('_') + 1);
        v = std::stod(num, &pos);
        if (pos != num.size()) v = -1;
      }
    } catch (const std::exception&) {
      v = -1;
    }
    if (a.rfind("ema_", 0) == 0 ? !(v > 0 && v < 1) : a.rfind("poly_", 0) == 0 ? !(v >= 0) : true)
      o.fail(o.lines.count(key) ? key : "averagers",
             "invalid averager '" + a + "' (expected ema_<decay> with 0 < decay < 1, e.g. ema_0.999, or "
             "poly_<eta> with eta >= 0, e.g. poly_8)");
    for (std::size_t j = 0; j < i; ++j)
      if (c.averagers[j] == a) o.fail(o.lines.count(key) ? key : "averagers", "duplicate averager '" + a + "'");
  }
}

}  // namespace openlm::detail
