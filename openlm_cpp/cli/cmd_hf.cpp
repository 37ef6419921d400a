// `openlm export-hf SOURCE OUT --format openlm|llama [--dtype fp32|bf16] [--max-shard-size 5GB]`
// `openlm import-hf DIR_OR_PT OUT [--model NAME_OR_RECIPE]`
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>

#include "openlm_cpp/checkpoint/hf_export.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/inference.h"

namespace {

struct ExportArgs {
  std::string source, out, format = "openlm", dtype = "fp32", max_shard = "5GB", weights;
};

struct ImportArgs {
  std::string source, out, model;
};

/// A model name, a model recipe, or a train recipe (its model section).
openlm::ModelConfig resolve_model(const std::string& spec) {
  try {
    return openlm::load_model(spec);
  } catch (const openlm::ConfigError&) {
    if (!std::filesystem::is_regular_file(spec)) throw;
  }
  return openlm::load_train_recipe(spec).model;
}

openlm::cli::Registrar export_reg("export-hf", [](CLI::App& root) {
  auto a = std::make_shared<ExportArgs>();
  auto* sub = root.add_subcommand("export-hf", "Write a Hugging Face directory (openlm or llama format)");
  sub->add_option("source", a->source, "run directory, checkpoint directory, import-hf output or HF directory")
      ->required();
  sub->add_option("out", a->out, "output directory")->required();
  openlm::cli::add_weights_option(sub, a->weights);
  sub->add_option("--format", a->format, "openlm (apple/DCLM-7B layout) | llama (LlamaForCausalLM)")
      ->check(CLI::IsMember({"openlm", "llama"}));
  sub->add_option("--dtype", a->dtype, "weight dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->add_option("--max-shard-size", a->max_shard, "largest safetensors file (5GB, 500MB, 2GiB, bytes)");
  sub->callback([a] {
    a->source = openlm::weights_source(a->source, a->weights);
    namespace ck = openlm::checkpoint;
    ck::ExportOptions o;
    o.format = openlm::hf::parse_format(a->format);
    o.dtype = a->dtype == "bf16" ? at::kBFloat16 : at::kFloat;
    o.max_shard_bytes = ck::parse_byte_size(a->max_shard);
    ck::ImportedModel model = ck::load_any(a->source);
    if (!model.tokenizer.path.empty()) {  // SentencePiece .model or tokenizer.json
      try {  // bos/eos ids for config.json and generation_config.json
        auto tok = openlm::load_tokenizer(model.tokenizer.type, model.tokenizer.path);
        o.bos_id = tok->bos_id();
        o.eos_id = tok->eos_id();
      } catch (const openlm::Error& e) {
        openlm::log::warn("export-hf: cannot load tokenizer {} ({}); bos/eos ids not recorded", model.tokenizer.path,
                          e.what());
      }
    }
    std::string why = openlm::hf::unsupported_reason(model.model, o.format);
    if (!why.empty())
      throw openlm::Error("'" + a->source + "' cannot be exported in the " + a->format + " format: " + why);
    auto r = ck::write_hf(model, a->out, o);
    std::cout << "wrote " << a->out << " (" << a->format << ", " << a->dtype << ", " << r.weights.files.size()
              << " safetensors file" << (r.weights.files.size() == 1 ? "" : "s") << ", " << r.weights.total_size
              << " bytes of tensors, " << r.tokenizer_files.size() << " tokenizer files)" << std::endl;
  });
});

openlm::cli::Registrar import_reg("import-hf", [](CLI::App& root) {
  auto a = std::make_shared<ImportArgs>();
  auto* sub = root.add_subcommand("import-hf",
                                  "Convert a Hugging Face directory (openlm or llama format) or a raw OpenLM .pt "
                                  "checkpoint into a native model directory");
  sub->add_option("source", a->source, "HF directory, OpenLM epoch_N.pt, or a native run/checkpoint")->required();
  sub->add_option("out", a->out, "output directory (model.safetensors + config.json + tokenizer)")->required();
  sub->add_option("--model", a->model, "model name or recipe (required for a .pt, which has no config)");
  sub->callback([a] {
    openlm::ModelConfig m;
    if (!a->model.empty()) {
      m = resolve_model(a->model);
      openlm::check_weights_fit(m, a->model);  // before reading a .pt sized by it
    }
    auto im = openlm::checkpoint::import_to_native(a->source, a->out, a->model.empty() ? nullptr : &m);
    std::cout << "imported " << a->source << " (" << im.origin << ", " << im.model.n_layers << " layers, dim "
              << im.model.dim << ") into " << a->out << std::endl;
  });
});

}  // namespace
