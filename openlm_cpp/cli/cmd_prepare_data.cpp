// `openlm prepare-data`: text / JSONL(.gz/.zst) -> tokenised, globally shuffled native or OpenLM tar
// shards + manifest.jsonl + prepare_data.json (data_loader/prepare_data.h, docs/DATA_FORMATS.md).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "data_loader/prepare_data.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace {

struct Args {
  std::vector<std::string> inputs;
  std::string format;
  bool quiet = false;
  openlm::data::PrepareOptions opt;
};

std::string human(double v) {
  char b[32];
  if (v >= 1e9) std::snprintf(b, sizeof b, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(b, sizeof b, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(b, sizeof b, "%.1fk", v / 1e3);
  else std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

std::string clock_text(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  char b[32];
  long t = static_cast<long>(s + 0.5);
  std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  return b;
}

/// One line rewritten in place ("\r") on stderr; only used when stderr is a terminal.
void print_progress(const openlm::data::PrepareProgress& p) {
  const double s = p.seconds > 0 ? p.seconds : 1e-9;
  std::string line;
  if (std::string(p.phase) == "tokenize") {
    double frac = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 0;
    double eta = frac > 0 ? p.seconds * (1 - frac) / frac : -1;
    line = "prepare-data: " + human(static_cast<double>(p.documents)) + " docs (" + human(p.documents / s) + "/s), " +
           human(static_cast<double>(p.tokens)) + " tokens (" + human(p.tokens / s) + "/s), input " +
           std::to_string(static_cast<int>(frac * 100)) + "%, ETA " + clock_text(eta);
  } else {
    line = "prepare-data: writing shards " + std::to_string(p.sequences_written) + "/" +
           std::to_string(p.sequences_total) + " sequences, " + clock_text(p.seconds) + " elapsed";
  }
  std::fprintf(stderr, "\r%-110s", line.c_str());
  std::fflush(stderr);
}

openlm::cli::Registrar reg("prepare-data", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto& o = a->opt;
  auto* c = root.add_subcommand("prepare-data",
                                "tokenize text/JSONL(.gz/.zst) inputs into globally shuffled native or OpenLM tar "
                                "shards + manifest.jsonl (DCLM's tokenize-shuffle)");
  c->add_option("--input", a->inputs,
                "PATH[:WEIGHT] ...: text files (documents split at blank lines), JSONL files (.jsonl/.json/.ndjson, "
                "optionally .gz/.zst), or folders of them; WEIGHT (default 1) upsamples: 2 = every document twice, "
                "0.5 = each document with probability 1/2 (seeded)")
      ->required();
  c->add_option("--tokenizer", o.tokenizer_path, "SentencePiece .model or Hugging Face tokenizer.json (or a folder)")
      ->required();
  c->add_option("--tokenizer-type", o.tokenizer_type, "auto | bpe | sentencepiece (auto: by the file name)")
      ->check(CLI::IsMember({"auto", "bpe", "sentencepiece"}))
      ->capture_default_str();
  c->add_option("--output", o.output_dir, "output directory (new, empty, or an earlier prepare-data output)")
      ->required();
  c->add_option("--format", a->format, "native | openlm-tar")->check(CLI::IsMember({"native", "openlm-tar"}))->required();
  c->add_option("--seq-len", o.seq_len, "model seq_len: sequences hold seq_len + 1 tokens")->required();
  c->add_option("--seed", o.seed, "shuffle (and fractional upsampling) seed")->required();
  c->add_option("--threads", o.threads, "tokenizer threads (the output does not depend on it)")->capture_default_str();
  c->add_option("--text-field", o.text_field, "JSONL field holding the document")->capture_default_str();
  c->add_flag("--no-pad", o.no_pad, "drop the incomplete last sequence instead of padding it");
  c->add_option("--pad-id", o.pad_id, "padding id (default: the tokenizer's padding token, else its end-of-text id)");
  c->add_flag("--skip-bad-lines", o.skip_bad_lines,
              "skip and count bad lines (invalid UTF-8, not JSON, no text field, empty document) instead of failing");
  c->add_option("--shard-sequences", o.shard_sequences, "sequences per shard")->capture_default_str();
  c->add_option("--memory-budget-mb", o.memory_budget_mb,
                "sequences buffered for the shuffle before sorted runs spill to DIR/.partial-*/tmp (same output)")
      ->capture_default_str();
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] {
    auto& opt = a->opt;
    opt.format = a->format == "native" ? openlm::data::ShardFormat::Native : openlm::data::ShardFormat::OpenLMTar;
    opt.inputs.clear();
    for (const auto& s : a->inputs) opt.inputs.push_back(openlm::data::parse_input_spec(s));
    openlm::cli::require_option(opt.threads >= 1, "--threads", "must be at least 1");
    const bool tty = !a->quiet && ::isatty(2);
    if (tty) opt.progress = print_progress;
    openlm::data::PrepareResult r;
    try {
      r = openlm::data::prepare_data(opt);
    } catch (...) {
      if (tty) std::fprintf(stderr, "\n");
      throw;
    }
    if (tty) std::fprintf(stderr, "\n");
    if (r.shuffle_runs > 0)
      openlm::log::info("prepare-data: shuffled through {} sorted runs on disk (--memory-budget-mb {})", r.shuffle_runs,
                        opt.memory_budget_mb);
    std::printf("%s\n", r.stats.dump().c_str());
    std::fflush(stdout);
  });
});

}  // namespace
