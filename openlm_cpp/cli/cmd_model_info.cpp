// `openlm model-info NAME_OR_RECIPE [--json] [--world-size W --strategy S --micro-batch B ...]`
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
  std::string what, precision = "amp_bfloat16", strategy = "full_shard";
  bool json = false, ckpt = true;
  int64_t world = 1, micro = 1, group = 0;
  std::vector<std::string> sets;
};

/// A model name, a model recipe, or a train recipe (whose model section is used).
openlm::ModelConfig resolve(const Args& a) {
  std::filesystem::path p(a.what);
  if (std::filesystem::exists(p) && p.parent_path().filename() != "models") {
    try {
      auto t = openlm::load_train_recipe(a.what, a.sets);
      return t.model;
    } catch (const openlm::ConfigError& e) {
      if (std::string(e.what()).find("unknown key") == std::string::npos) throw;
    }
  }
  return openlm::load_model(a.what, a.sets);
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
  sub->add_option("--world-size", a->world, "ranks sharing the model (memory estimate)");
  sub->add_option("--strategy", a->strategy, "full_shard | shard_grad_op | no_shard | hybrid_shard");
  sub->add_option("--shard-group-size", a->group, "hybrid_shard: ranks per shard group");
  sub->add_option("--micro-batch", a->micro, "sequences per micro-batch (activation memory)");
  sub->add_option("--precision", a->precision, "fp32 | amp_bfloat16 | pure_bf16");
  sub->add_option("--grad-checkpointing", a->ckpt, "activation checkpointing (true/false)");
  sub->add_option("--set", a->sets, "override a model key: --set qk_norm=true");
  sub->callback([a] {
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
    openlm::ModelConfig m = resolve(*a);
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
