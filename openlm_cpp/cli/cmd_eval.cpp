// `openlm eval CHECKPOINT_OR_RUN (--tokens FILE | --data MANIFEST [--max-sequences N]) [--stride S] [--json]
// [--logits-out FILE.safetensors]`: mean next-token loss over every target of every sequence (sequences
// longer than seq_len + 1 in sliding windows, train/inference.h score_sequence); optionally the fp32
// logits of equal-length sequences as safetensors.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "data_loader/manifest.h"
#include "data_loader/shard_reader.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/train/inference.h"

namespace {
struct Args {
  std::string source, tokens, data, logits_out;
  int64_t stride = 0, max_sequences = 0;
  bool json = false;
};

/// The sequences of a token file, one per line; an empty line, a line of one token or a word that is
/// not an integer is refused naming FILE:LINE.
std::vector<std::vector<int64_t>> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) openlm::throw_errno("cannot open token file", path);
  std::vector<std::vector<int64_t>> seqs;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const std::string where = path + ":" + std::to_string(n);
    std::istringstream ls(line);
    std::vector<int64_t> s;
    std::string w;
    while (ls >> w) {
      try {
        std::size_t pos = 0;
        s.push_back(std::stoll(w, &pos));
        if (pos != w.size()) throw std::invalid_argument(w);
      } catch (const std::exception&) {
        throw openlm::DataError(where + ": '" + w + "' is not a token id");
      }
    }
    if (s.size() < 2)
      throw openlm::DataError(where + ": " + (s.empty() ? std::string("empty line") : "1 token") +
                              "; every line must be a sequence of at least 2 token ids (the first is only context)");
    seqs.push_back(std::move(s));
  }
  if (seqs.empty()) throw openlm::DataError(path + ": no token sequences");
  return seqs;
}

openlm::cli::Registrar reg("eval", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand(
      "eval",
      "Mean next-token cross entropy of a model on token sequences: every token after the first of each "
      "sequence is scored once; sequences longer than seq_len + 1 in windows of seq_len inputs (--stride)");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  auto* tok = sub->add_option("--tokens", a->tokens,
                              "file of whitespace-separated token ids, one sequence (>= 2 ids) per line");
  auto* data = sub->add_option("--data", a->data,
                               "manifest.jsonl of OpenLM tar or native shards: every stored sequence is scored, "
                               "in manifest order");
  tok->excludes(data);
  sub->add_option("--max-sequences", a->max_sequences, "with --data: score only the first N sequences (0 = all)")
      ->capture_default_str()
      ->needs(data);
  sub->add_option("--stride", a->stride,
                  "window stride S for sequences longer than seq_len + 1 (L = seq_len): window k holds tokens "
                  "[kS, kS+L] and scores the targets no earlier window scored; 0 = L (disjoint windows)")
      ->capture_default_str();
  sub->add_flag("--json", a->json, "print one JSON object");
  sub->add_option("--logits-out", a->logits_out,
                  "also write the fp32 logits [sequences, T, vocab] of the whole sequences (all of equal length "
                  "T <= seq_len) to this safetensors file, key \"logits\"")
      ->needs(tok);
  sub->callback([a] {
    if (a->tokens.empty() && a->data.empty())
      throw openlm::ConfigError("--tokens", "", 0, "give --tokens FILE or --data MANIFEST");
    openlm::cli::require_option(a->stride >= 0, "--stride",
                                "must be >= 1, or 0 = seq_len (got " + std::to_string(a->stride) + ")");
    openlm::cli::require_option(a->max_sequences >= 0, "--max-sequences",
                                "must be >= 0, 0 = all (got " + std::to_string(a->max_sequences) + ")");
    // Token files are read (and refused) before the model is loaded.
    std::vector<std::vector<int64_t>> seqs;
    if (!a->tokens.empty()) seqs = read_token_file(a->tokens);
    openlm::data::Manifest manifest;
    if (!a->data.empty()) manifest = openlm::data::read_manifest(a->data);
    auto m = openlm::load_for_inference(a->source);
    const int64_t L = m.model->config().seq_len;
    openlm::cli::require_option(a->stride <= L, "--stride",
                                "must not exceed the model's seq_len " + std::to_string(L) + " (got " +
                                    std::to_string(a->stride) + ")");
    openlm::EvalResult r;
    if (!a->tokens.empty()) {
      for (std::size_t i = 0; i < seqs.size(); ++i)  // every id checked before anything is written
        for (auto id : seqs[i])
          if (id < 0 || id >= m.model->config().vocab_size)
            throw openlm::DataError(a->tokens + ":" + std::to_string(i + 1) + ": token id " + std::to_string(id) +
                                    " outside the vocabulary [0, " + std::to_string(m.model->config().vocab_size) + ")");
      if (!a->logits_out.empty()) {  // before the loss, so that a refused input writes nothing
        at::Tensor logits = openlm::sequence_logits(*m.model, seqs);
        openlm::checkpoint::save_safetensors(a->logits_out, openlm::checkpoint::NamedTensors{{"logits", logits}},
                                             {{"source", a->source}});
      }
      for (std::size_t i = 0; i < seqs.size(); ++i)
        openlm::score_sequence(*m.model, seqs[i], a->stride, r, a->tokens + ":" + std::to_string(i + 1));
    } else {
      openlm::data::DecodeScratch scratch;
      std::vector<int64_t> ids;
      for (const auto& e : manifest.entries) {
        if (a->max_sequences > 0 && r.sequences >= a->max_sequences) break;
        auto reader = openlm::data::open_shard(e);
        const int64_t n = reader->size();
        if (n != e.num_sequences)
          throw openlm::DataError("manifest '" + a->data + "' says shard '" + e.shard + "' has " +
                                  std::to_string(e.num_sequences) + " sequences but " + e.path + " holds " +
                                  std::to_string(n));
        for (int64_t i = 0; i < n && !(a->max_sequences > 0 && r.sequences >= a->max_sequences); ++i) {
          reader->read(i, ids, scratch);
          openlm::score_sequence(*m.model, ids, a->stride, r, reader->describe(i));
        }
      }
      if (r.sequences == 0) throw openlm::DataError("manifest '" + a->data + "' holds no sequences");
    }
    nlohmann::json j = {{"loss", r.loss},        {"tokens", r.tokens}, {"sequences", r.sequences},
                        {"windows", r.windows}, {"stride", a->stride > 0 ? a->stride : L}};
    std::cout << (a->json ? j.dump()
                          : "loss " + std::to_string(r.loss) + " over " + std::to_string(r.tokens) + " tokens of " +
                                std::to_string(r.sequences) + " sequences (" + std::to_string(r.windows) +
                                " windows)")
              << std::endl;
  });
});
}  // namespace
