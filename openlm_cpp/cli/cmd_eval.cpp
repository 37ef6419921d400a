// `openlm eval CHECKPOINT_OR_RUN --tokens FILE [--json] [--logits-out FILE.safetensors]`: mean next-token
// loss on token sequences; optionally the fp32 logits of equal-length sequences as safetensors.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/train/inference.h"

namespace {
struct Args {
  std::string source, tokens, logits_out;
  bool json = false;
};

openlm::cli::Registrar reg("eval", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("eval", "Mean next-token cross entropy of a model on token sequences");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  sub->add_option("--tokens", a->tokens, "file of whitespace-separated token ids, one sequence per line")->required();
  sub->add_flag("--json", a->json, "print one JSON object");
  sub->add_option("--logits-out", a->logits_out,
                  "also write the fp32 logits [sequences, T, vocab] of the whole sequences (all of equal length "
                  "T <= seq_len) to this safetensors file, key \"logits\"");
  sub->callback([a] {
    std::ifstream in(a->tokens);
    if (!in) openlm::throw_errno("cannot open token file", a->tokens);
    std::vector<std::vector<int64_t>> seqs;
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      std::istringstream ls(line);
      std::vector<int64_t> s;
      std::string w;
      while (ls >> w) {
        try {
          std::size_t pos = 0;
          s.push_back(std::stoll(w, &pos));
          if (pos != w.size()) throw std::invalid_argument(w);
        } catch (const std::exception&) {
          throw openlm::DataError(a->tokens + ":" + std::to_string(n) + ": '" + w + "' is not a token id");
        }
      }
      if (!s.empty()) seqs.push_back(std::move(s));
    }
    auto m = openlm::load_for_inference(a->source);
    if (!a->logits_out.empty()) {  // before the loss, so that a refused input writes nothing
      at::Tensor logits = openlm::sequence_logits(*m.model, seqs);
      openlm::checkpoint::save_safetensors(a->logits_out, openlm::checkpoint::NamedTensors{{"logits", logits}},
                                           {{"source", a->source}});
    }
    auto r = openlm::evaluate_sequences(*m.model, seqs);
    nlohmann::json j = {{"loss", r.loss}, {"tokens", r.tokens}, {"sequences", seqs.size()}};
    std::cout << (a->json ? j.dump() : "loss " + std::to_string(r.loss) + " over " + std::to_string(r.tokens) + " tokens")
              << std::endl;
  });
});
}  // namespace
