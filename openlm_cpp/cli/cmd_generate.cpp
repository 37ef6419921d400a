// `openlm generate RUN_DIR_OR_WEIGHTS [--prompt TEXT --max-new-tokens N --temperature T --top-k K --top-p P --seed S --json]`
// Options not given take the run's `generate:` recipe settings (README, docs/RECIPES.md).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/train/inference.h"

namespace {
// Unset options take the run's `generate:` recipe settings (its resolved config.json; a Hugging
// Face directory has the recipe defaults). The values below are the recipe defaults (config.h),
// shown by --help.
struct Args {
  std::string source, prompt, tokenizer, weights;
  openlm::GenerateConfig g;  // max_new_tokens 48, temperature 0.8, top_k 40, top_p 1.0
  uint64_t seed = 0;
  bool no_cache = false, json = false;
};

openlm::cli::Registrar reg("generate", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("generate",
                                  "Sample text from a trained model (run dir or checkpoint); options not given take the "
                                  "run's generate: recipe settings");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  openlm::cli::add_weights_option(sub, a->weights);
  sub->add_option("--prompt", a->prompt, "prompt text (default: the run's generate.prompt)");
  sub->add_option("--tokenizer", a->tokenizer, "tokenizer.model or tokenizer.json (default: the run's)");
  sub->add_option("--max-new-tokens", a->g.max_new_tokens,
                  "tokens to generate (default: the run's generate.max_new_tokens; recipe default shown)");
  sub->add_option("--temperature", a->g.temperature,
                  "0 = greedy (default: the run's generate.temperature; recipe default shown)");
  sub->add_option("--top-k", a->g.top_k,
                  "sample among the k most likely, 0 = off (default: the run's generate.top_k; recipe default shown)");
  sub->add_option("--top-p", a->g.top_p,
                  "nucleus sampling mass, 1 = off (default: the run's generate.top_p; recipe default shown)");
  sub->add_option("--seed", a->seed, "sampling seed (another seed, another sample when temperature > 0)");
  sub->add_flag("--no-kv-cache", a->no_cache, "recompute the whole context each token");
  sub->add_flag("--json", a->json,
                "print one JSON object: prompt_ids (the encoded prompt), ids (the generated ids only) and text "
                "(prompt + generation, decoded)");
  sub->callback([a, sub] {
    a->source = openlm::weights_source(a->source, a->weights);
    // Option ranges first, before the model is loaded (NaN fails every comparison, hence the forms).
    namespace cli = openlm::cli;
    auto num = [](double v) {
      std::ostringstream os;
      os << v;
      return os.str();
    };
    const auto& g = a->g;
    cli::require_option(std::isfinite(g.temperature) && g.temperature >= 0, "--temperature",
                        "must be a finite number >= 0, 0 = greedy (got " + num(g.temperature) + ")");
    cli::require_option(std::isfinite(g.top_p) && g.top_p > 0 && g.top_p <= 1, "--top-p",
                        "must be in (0, 1], 1 = off (got " + num(g.top_p) + ")");
    cli::require_option(g.top_k >= 0, "--top-k", "must be >= 0, 0 = off (got " + std::to_string(g.top_k) + ")");
    cli::require_option(g.max_new_tokens >= 0, "--max-new-tokens",
                        "must be >= 0 (got " + std::to_string(g.max_new_tokens) + ")");
    auto loaded = openlm::load_for_inference(a->source, a->tokenizer);
    if (!loaded.tokenizer) throw openlm::Error("no tokenizer: pass --tokenizer");
    // Each option not given: the run's generate: setting (validated when its config was read).
    const openlm::GenerateConfig& run = loaded.config.generate;
    auto given = [&](const char* opt) { return sub->count(opt) > 0; };
    const std::string prompt = given("--prompt") ? a->prompt : run.prompt;
    if (prompt.empty())
      throw openlm::ConfigError("--prompt", "", 0,
                                "missing: pass --prompt TEXT (the run's recipe has no generate.prompt)");
    openlm::SampleOptions o;
    o.max_new_tokens = given("--max-new-tokens") ? g.max_new_tokens : run.max_new_tokens;
    o.temperature = given("--temperature") ? g.temperature : run.temperature;
    o.top_k = given("--top-k") ? g.top_k : run.top_k;
    o.top_p = given("--top-p") ? g.top_p : run.top_p;
    o.seed = a->seed;
    o.use_kv_cache = !a->no_cache;
    o.stop_token = loaded.tokenizer->eos_id();
    auto ids32 = loaded.tokenizer->encode(prompt);
    std::vector<int64_t> ids(ids32.begin(), ids32.end());
    auto out = openlm::generate(*loaded.model, ids, o);
    std::string text = loaded.tokenizer->decode(std::vector<int32_t>(out.begin(), out.end()));
    if (a->json) {
      // generate() keeps at most seq_len prompt tokens (the newest) in front of the generated ones.
      auto kept = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(loaded.model->config().seq_len));
      std::vector<int64_t> gen(out.begin() + static_cast<std::ptrdiff_t>(kept), out.end());
      std::cout << nlohmann::json{{"prompt_ids", ids}, {"ids", gen}, {"text", text}}.dump() << std::endl;
    } else {
      std::cout << text << std::endl;
    }
  });
});
}  // namespace
