// `openlm generate RUN_DIR_OR_WEIGHTS --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P]`
#include <iostream>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/train/inference.h"

namespace {
struct Args {
  std::string source, prompt, tokenizer;
  int64_t max_new = 64, top_k = 0;
  double temperature = 0.0, top_p = 1.0;
  uint64_t seed = 0;
  bool no_cache = false;
};

openlm::cli::Registrar reg("generate", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("generate", "Sample text from a trained model (run dir or checkpoint)");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  sub->add_option("--prompt", a->prompt, "prompt text")->required();
  sub->add_option("--tokenizer", a->tokenizer, "tokenizer.model (default: the run's)");
  sub->add_option("--max-new-tokens", a->max_new, "tokens to generate");
  sub->add_option("--temperature", a->temperature, "0 = greedy");
  sub->add_option("--top-k", a->top_k, "sample among the k most likely (0 = off)");
  sub->add_option("--top-p", a->top_p, "nucleus sampling mass (1 = off)");
  sub->add_option("--seed", a->seed, "sampling seed");
  sub->add_flag("--no-kv-cache", a->no_cache, "recompute the whole context each token");
  sub->callback([a] {
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
    std::cout << loaded.tokenizer->decode(std::vector<int32_t>(out.begin(), out.end())) << std::endl;
  });
});
}  // namespace
