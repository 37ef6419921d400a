// `openlm model-info NAME_OR_RECIPE [--json] [--world-size W --strategy S --micro-batch B ...] [--set key=value ...]`
// A train recipe's precision, parallel.strategy, batch.micro_batch_size, parallel.shard_group_size and
// grad_checkpointing are used unless the options override them; `--set` takes the keys exactly as
// `openlm train` does (model.dim=64, precision=fp32), for a model name or model recipe too.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <set>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"

namespace {
struct Args {
  // Defaults for a bare model name or model recipe (sizing a large model); a train recipe's own
  // settings replace them, and the options below replace both.
  std::string what, precision = "amp_bfloat16", strategy = "full_shard";
  bool json = false, ckpt = true;
  int64_t world = 1, micro = 1, group = 0;
  std::vector<std::string> sets;
};

/// `--set` keys as `openlm train` spells them; a bare model key (`qk_norm=true`, the older
/// model-info spelling) is taken as `model.qk_norm=true`.
std::vector<std::string> train_spelling(const std::vector<std::string>& sets) {
  const nlohmann::json model_keys = openlm::to_json(openlm::ModelConfig{});
  std::vector<std::string> out;
  for (const auto& s : sets) {
    const std::string key = s.substr(0, s.find('='));
    out.push_back(key.find('.') == std::string::npos && model_keys.contains(key) ? "model." + s : s);
  }
  return out;
}

/// A train recipe as is; a model name or model recipe inside a minimal train recipe carrying
/// model-info's defaults, so that `--set` applies and is checked exactly as `openlm train` does it.
openlm::TrainConfig resolve(const Args& a) {
  const auto sets = train_spelling(a.sets);
  std::filesystem::path p(a.what);
  bool train_recipe = false;
  if (std::filesystem::exists(p) && p.parent_path().filename() != "models") {
    try {  // without the overrides: a bad --set key must not make a train recipe look like a model recipe
      openlm::load_train_recipe(a.what);
      train_recipe = true;
    } catch (const openlm::ConfigError& e) {
      if (std::string(e.what()).find("unknown key") == std::string::npos) throw;
    }
  }
  if (train_recipe) return openlm::load_train_recipe(a.what, sets);
  // Checks the name (or path) first, with load_model's message when it names no model.
  openlm::load_model(a.what);
  const std::string model = std::filesystem::exists(p) ? std::filesystem::absolute(p).string() : a.what;
  const std::string text = "model: " + nlohmann::json(model).dump() + "\nprecision: " + a.precision +
                           "\ngrad_checkpointing: " + (a.ckpt ? "true" : "false") +
                           "\nparallel: {strategy: " + a.strategy + "}\ndata: {default_corpus: true}\n"
                           "batch: {global_batch_size: " + std::to_string(a.micro) +
                           ", micro_batch_size: " + std::to_string(a.micro) + "}\nmax_steps: 1\n";
  return openlm::load_train_recipe_text(text, a.what, std::filesystem::current_path().string(), sets);
}

std::string human(double bytes) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (bytes >= 1024 && i < 4) {
    bytes /= 1024;
    ++i;
  }
  return fmt::format("{:.2f} {}", bytes, u[i]);
}

openlm::cli::Registrar reg("model-info", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("model-info", "Parameter counts, FLOPs per token and training memory of a model");
  sub->add_option("model", a->what, "model name (open_lm_1b), model recipe or train recipe")->required();
  sub->add_flag("--json", a->json, "print one JSON object");
  const std::string from_recipe = " (a train recipe's own value when not given)";
  sub->add_option("--world-size", a->world, "ranks sharing the model (memory estimate)");
  auto* o_strategy = sub->add_option("--strategy", a->strategy,
                                     "full_shard | shard_grad_op | no_shard | hybrid_shard" + from_recipe);
  auto* o_group = sub->add_option("--shard-group-size", a->group, "hybrid_shard: ranks per shard group" + from_recipe);
  auto* o_micro = sub->add_option("--micro-batch", a->micro, "sequences per micro-batch (activation memory)" + from_recipe);
  auto* o_precision = sub->add_option("--precision", a->precision, "fp32 | amp_bfloat16 | pure_bf16" + from_recipe);
  auto* o_ckpt = sub->add_option("--grad-checkpointing", a->ckpt, "activation checkpointing (true/false)" + from_recipe);
  sub->add_option("--set", a->sets,
                  "override a recipe key as `openlm train` does: --set model.dim=64 --set precision=fp32 (repeatable)");
  sub->callback([a, o_strategy, o_group, o_micro, o_precision, o_ckpt] {
    namespace cli = openlm::cli;
    cli::require_option(a->world >= 1, "--world-size", "must be >= 1 (got " + std::to_string(a->world) + ")");
    cli::require_option(a->micro >= 1, "--micro-batch", "must be >= 1 (got " + std::to_string(a->micro) + ")");
    cli::require_option(a->group >= 0, "--shard-group-size",
                        "must be >= 0, 0 = the world size (got " + std::to_string(a->group) + ")");
    const std::set<std::string> strategies = {"full_shard", "shard_grad_op", "no_shard", "hybrid_shard"};
    cli::require_option(strategies.count(a->strategy) > 0, "--strategy",
                        "must be full_shard | shard_grad_op | no_shard | hybrid_shard (got '" + a->strategy + "')");
    const std::set<std::string> precisions = {"fp32", "amp_bfloat16", "amp_bf16", "pure_bf16"};
    cli::require_option(precisions.count(a->precision) > 0, "--precision",
                        "must be fp32 | amp_bfloat16 | pure_bf16 (got '" + a->precision + "')");
    // The recipe's settings (after --set), unless the options were given.
    const openlm::TrainConfig t = resolve(*a);
    if (o_precision->count() == 0) a->precision = t.precision;
    if (o_strategy->count() == 0) a->strategy = t.parallel.strategy;
    if (o_micro->count() == 0) a->micro = t.batch.micro_batch_size;
    if (o_group->count() == 0) a->group = t.parallel.shard_group_size;
    if (o_ckpt->count() == 0) a->ckpt = t.grad_checkpointing;
    const openlm::ModelConfig& m = t.model;
    auto c = openlm::check_model_size(m, a->what);
    double fpt = openlm::flops_per_token(m);
    auto mem = openlm::estimate_memory(m, a->precision, a->micro, a->ckpt, a->world, a->strategy, a->group);
    nlohmann::json j = {{"name", m.name},
                        {"params_total", c.total},
                        {"params_embedding", c.embedding},
                        {"params_non_embedding", c.non_embedding},
                        {"flops_per_token", fpt},
                        {"head_dim", m.head_dim()},
                        {"attn_width", m.attn_width()},
                        {"ffn_hidden", m.hidden_dim()},
                        {"memory",
                         {{"world_size", a->world},
                          {"strategy", a->strategy},
                          {"precision", a->precision},
                          {"micro_batch", a->micro},
                          {"grad_checkpointing", a->ckpt},
                          {"params_bytes", mem.params},
                          {"grads_bytes", mem.grads},
                          {"optimizer_bytes", mem.optimizer},
                          {"activations_bytes", mem.activations},
                          {"logits_bytes", mem.logits},
                          {"total_bytes_per_device", mem.total()}}}};
    if (a->json) {
      std::cout << j.dump() << std::endl;
      return;
    }
    std::cout << fmt::format(
        "{}: d={} layers={} heads={} (kv {}) head_dim={} ffn={} seq={} vocab={}\n"
        "  parameters      {:>16L}\n  non-embedding   {:>16L}\n  FLOPs/token     {:>16.4e}\n"
        "  training memory per device ({} x {}, {}, micro-batch {}{}):\n"
        "    params {}  grads {}  optimizer {}  activations {}  logits {}  total {}\n",
        m.name, m.dim, m.n_layers, m.n_heads, m.kv_heads(), m.head_dim(), m.hidden_dim(), m.seq_len, m.vocab_size,
        c.total, c.non_embedding, fpt, a->world, a->strategy, a->precision, a->micro,
        a->ckpt ? ", activation checkpointing" : "", human(mem.params), human(mem.grads), human(mem.optimizer),
        human(mem.activations), human(mem.logits), human(mem.total()));
  });
});
}  // namespace
