// `openlm generate RUN_DIR_OR_WEIGHTS --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --json]`
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/train/inference.h"

namespace {
struct Args {
  std::string source, prompt, tokenizer;
  int64_t max_new = 64, top_k = 0;
  double temperature = 0.0, top_p = 1.0;
  uint64_t seed = 0;
  bool no_cache = false, json = false;
};

openlm::cli::Registrar reg("generate", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("generate", "Sample text from a trained model (run dir or checkpoint)");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  sub->add_option("--prompt", a->prompt, "prompt text")->required();
  sub->add_option("--tokenizer", a->tokenizer, "tokenizer.model or tokenizer.json (default: the run's)");
  sub->add_option("--max-new-tokens", a->max_new, "tokens to generate");
  sub->add_option("--temperature", a->temperature, "0 = greedy");
  sub->add_option("--top-k", a->top_k, "sample among the k most likely (0 = off)");
  sub->add_option("--top-p", a->top_p, "nucleus sampling mass (1 = off)");
  sub->add_option("--seed", a->seed, "sampling seed");
  sub->add_flag("--no-kv-cache", a->no_cache, "recompute the whole context each token");
  sub->add_flag("--json", a->json,
                "print one JSON object: prompt_ids (the encoded prompt), ids (the generated ids only) and text "
                "(prompt + generation, decoded)");
  sub->callback([a] {
    // Option ranges first, before the model is loaded (NaN fails every comparison, hence the forms).
    namespace cli = openlm::cli;
    auto num = [](double v) {
      std::ostringstream os;
      os << v;
      return os.str();
    };
    cli::require_option(std::isfinite(a->temperature) && a->temperature >= 0, "--temperature",
                        "must be a finite number >= 0, 0 = greedy (got " + num(a->temperature) + ")");
    cli::require_option(std::isfinite(a->top_p) && a->top_p > 0 && a->top_p <= 1, "--top-p",
                        "must be in (0, 1], 1 = off (got " + num(a->top_p) + ")");
    cli::require_option(a->top_k >= 0, "--top-k", "must be >= 0, 0 = off (got " + std::to_string(a->top_k) + ")");
    cli::require_option(a->max_new >= 0, "--max-new-tokens", "must be >= 0 (got " + std::to_string(a->max_new) + ")");
    auto loaded = openlm::load_for_inference(a->source, a->tokenizer);
    if (!loaded.tokenizer) throw openlm::Error("no tokenizer: pass --tokenizer");
    openlm::SampleOptions o;
    o.max_new_tokens = a->max_new;
    o.temperature = a->temperature;
    o.top_k = a->top_k;
    o.top_p = a->top_p;
    o.seed = a->seed;
    o.use_kv_cache = !a->no_cache;
    o.stop_token = loaded.tokenizer->eos_id();
    auto ids32 = loaded.tokenizer->encode(a->prompt);
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
