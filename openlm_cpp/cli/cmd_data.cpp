// `openlm data convert|stats`: shard conversion and inspection (data_loader/data_tools.h). Text ->
// shards is `openlm prepare-data` (cmd_prepare_data.cpp); `data tokenize` only points there.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data_loader/data_tools.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace {

struct DataArgs {
  std::string convert_input, convert_output, convert_format = "native";
  int64_t convert_vocab = 0;
  std::string stats_manifest;
  bool stats_json = false;
  int stats_threads = 1;
};

void setup(CLI::App& root) {
  auto a = std::make_shared<DataArgs>();
  auto* data = root.add_subcommand("data", "prepare, convert and inspect token shards");
  data->require_subcommand(1);

  // Replaced by `openlm prepare-data` (tokenize + shuffle + tar/native shards); kept hidden so that
  // an old command line gets a pointer instead of "unknown subcommand".
  auto* tok = data->add_subcommand("tokenize", "");
  tok->group("");
  tok->allow_extras();
  tok->callback([] {
    throw openlm::ConfigError("openlm data tokenize", "", 0,
                              "replaced by `openlm prepare-data --input PATH... --tokenizer FILE --output DIR "
                              "--format native --seq-len N --seed S --no-pad` (see docs/DATA_FORMATS.md)");
  });

  auto* conv = data->add_subcommand("convert", "convert shards between OpenLM tar and native formats");
  conv->add_option("--input", a->convert_input, "input manifest.jsonl")->required();
  conv->add_option("--output", a->convert_output, "output directory")->required();
  conv->add_option("--format", a->convert_format, "native | openlm-tar")
      ->check(CLI::IsMember({"native", "openlm-tar"}))
      ->capture_default_str();
  conv->add_option("--vocab-size", a->convert_vocab, "picks the native dtype (default: from the largest id)");
  conv->callback([a] {
    auto fmt = a->convert_format == "native" ? openlm::data::ShardFormat::Native : openlm::data::ShardFormat::OpenLMTar;
    int64_t n = openlm::data::convert_manifest(a->convert_input, a->convert_output, fmt, a->convert_vocab);
    openlm::log::info("converted {} sequences to {} in {}", n, a->convert_format, a->convert_output);
  });

  auto* stats = data->add_subcommand("stats", "read every member of a manifest's shards and report counts");
  stats->add_option("manifest", a->stats_manifest, "manifest.jsonl")->required();
  stats->add_flag("--json", a->stats_json, "print one JSON object");
  stats->add_option("--threads", a->stats_threads, "reader threads")->capture_default_str();
  stats->callback([a] {
    auto s = openlm::data::compute_stats(a->stats_manifest, a->stats_threads);
    nlohmann::json j = {{"manifest", a->stats_manifest}, {"format", s.format},
                        {"num_shards", s.num_shards},     {"num_sequences", s.num_sequences},
                        {"seq_len", s.seq_len},           {"min_seq_len", s.min_seq_len},
                        {"max_seq_len", s.max_seq_len},   {"num_tokens", s.num_tokens},
                        {"min_token_id", s.min_token_id}, {"max_token_id", s.max_token_id}};
    if (a->stats_json) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      for (auto& [k, v] : j.items()) std::printf("%-14s %s\n", k.c_str(), v.dump().c_str());
    }
  });
}

openlm::cli::Registrar reg("data", setup);

}  // namespace
