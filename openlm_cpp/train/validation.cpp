#include "openlm_cpp/train/validation.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "data_loader/manifest.h"
#include "data_loader/shard_reader.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/model/modules.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/parallel/comm.h"

namespace openlm {

std::vector<std::vector<int64_t>> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_errno("cannot open token file", path);
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
        throw DataError(where + ": '" + w + "' is not a token id");
      }
    }
    if (s.size() < 2)
      throw DataError(where + ": " + (s.empty() ? std::string("empty line") : "1 token") +
                      "; every line must be a sequence of at least 2 token ids (the first is only context)");
    seqs.push_back(std::move(s));
  }
  if (seqs.empty()) throw DataError(path + ": no token sequences");
  return seqs;
}

int64_t for_each_manifest_sequence(const data::Manifest& manifest, int64_t max_sequences,
                                   const std::function<void(const std::vector<int64_t>&, const std::string&)>& fn) {
  data::DecodeScratch scratch;
  std::vector<int64_t> ids;
  int64_t done = 0;
  auto full = [&] { return max_sequences > 0 && done >= max_sequences; };
  for (const auto& e : manifest.entries) {
    if (full()) break;
    auto reader = data::open_shard(e);
    const int64_t n = reader->size();
    if (n != e.num_sequences)
      throw DataError("manifest '" + manifest.path + "' says shard '" + e.shard + "' has " +
                      std::to_string(e.num_sequences) + " sequences but " + e.path + " holds " + std::to_string(n));
    for (int64_t i = 0; i < n && !full(); ++i, ++done) {
      reader->read(i, ids, scratch);
      fn(ids, reader->describe(i));
    }
  }
  if (done == 0) throw DataError("manifest '" + manifest.path + "' holds no sequences");
  return done;
}

std::vector<std::vector<int64_t>> read_manifest_sequences(const std::string& path, int64_t max_sequences) {
  std::vector<std::vector<int64_t>> out;
  for_each_manifest_sequence(data::read_manifest(path), max_sequences,
                             [&](const std::vector<int64_t>& ids, const std::string&) { out.push_back(ids); });
  return out;
}

Validator::Validator(const EvalConfig& cfg, const std::string& heldout_manifest, int64_t seq_len,
                     int64_t vocab_size, int64_t batch_size) {
  const std::size_t B = static_cast<std::size_t>(std::max<int64_t>(1, batch_size));
  for (std::size_t k = 0; k < cfg.val_data.size(); ++k) {
    const auto& v = cfg.val_data[k];
    const std::string label = "eval.val_data[" + std::to_string(k) + "] '" + v.name + "'";
    const bool heldout = v.path == kDefaultCorpusHeldout;
    if (heldout && heldout_manifest.empty())
      throw ConfigError("eval.val_data[" + std::to_string(k) + "].path", "", 0,
                        "default_corpus:heldout needs data.default_corpus: true (the held-out split of the corpus the "
                        "run trains on)");
    const std::string path = heldout ? heldout_manifest : v.path;
    Source s;
    s.name = v.name;
    const bool is_manifest = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
    s.sequences = is_manifest ? read_manifest_sequences(path, cfg.max_sequences) : read_token_file(path);
    if (!is_manifest && cfg.max_sequences > 0 && static_cast<int64_t>(s.sequences.size()) > cfg.max_sequences)
      s.sequences.resize(static_cast<std::size_t>(cfg.max_sequences));
    for (std::size_t i = 0; i < s.sequences.size(); ++i) {
      const auto& q = s.sequences[i];
      const std::string where = label + " (" + path + "), sequence " + std::to_string(i + 1);
      if (q.size() < 2 || static_cast<int64_t>(q.size()) > seq_len + 1)
        throw DataError(where + ": " + std::to_string(q.size()) + " tokens; validation sequences hold 2 .. seq_len + 1 = " +
                        std::to_string(seq_len + 1) + " (score longer ones with `openlm eval`, which windows them)");
      for (auto id : q)
        if (id < 0 || id >= vocab_size)
          throw DataError(where + ": token id " + std::to_string(id) + " outside the vocabulary [0, " +
                          std::to_string(vocab_size) + ")");
    }
    // Batches of consecutive equal-length sequences: the same batches for every world size.
    for (std::size_t b = 0; b < s.sequences.size();) {
      std::size_t e = b + 1;
      while (e < s.sequences.size() && e - b < B && s.sequences[e].size() == s.sequences[b].size()) ++e;
      s.batches.emplace_back(b, e);
      b = e;
    }
    sources_.push_back(std::move(s));
  }
}

std::vector<ValidationResult> Validator::run(Transformer& model, parallel::Communicator* comm) const {
  const int W = comm ? comm->size() : 1, rank = comm ? comm->rank() : 0;
  const bool was_training = model.module().is_training();
  const at::ScalarType compute = model.compute_dtype();
  if (compute == at::kBFloat16 && model.output_weight().scalar_type() == at::kFloat) model.set_compute_dtype(at::kFloat);
  model.train(false);
  std::vector<ValidationResult> out;
  {
    at::NoGradGuard no_grad;
    for (const Source& s : sources_) {
      const std::size_t nb = s.batches.size();
      // Per batch: summed cross entropy and scored tokens; zero where another rank scored it.
      at::Tensor sums = at::zeros({static_cast<int64_t>(2 * nb)}, at::kDouble);
      auto* acc = sums.data_ptr<double>();
      for (std::size_t round = 0; round * W < nb; ++round) {
        const std::size_t mine = round * W + static_cast<std::size_t>(rank);
        // Every rank runs a forward each round (a rank past the end repeats the round's first
        // batch and drops it), so sharded weights are gathered in lock step.
        const std::size_t b = mine < nb ? mine : round * W;
        const auto [first, last] = s.batches[b];
        const int64_t T = static_cast<int64_t>(s.sequences[first].size());
        std::vector<int64_t> flat;
        for (std::size_t i = first; i < last; ++i) flat.insert(flat.end(), s.sequences[i].begin(), s.sequences[i].end());
        at::Tensor tokens = at::tensor(flat, at::kLong).view({static_cast<int64_t>(last - first), T}).to(model.device());
        at::Tensor logits = model.forward(tokens.slice(1, 0, -1)).to(at::kFloat);
        at::Tensor nll = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), tokens.slice(1, 1).reshape({-1}),
                                                {}, at::Reduction::Sum, -100);
        if (mine < nb) {
          acc[2 * mine] = nll.to(at::kDouble).item<double>();
          acc[2 * mine + 1] = static_cast<double>((last - first) * static_cast<std::size_t>(T - 1));
        }
      }
      if (comm && W > 1) {
        at::Tensor t = sums.to(model.device());
        comm->all_reduce(t, parallel::ReduceOp::Sum);  // adding zeros: exact
        sums = t.to(at::kCPU);
        acc = sums.data_ptr<double>();
      }
      ValidationResult r;
      r.source = s.name;
      double nll_sum = 0, tokens = 0;
      for (std::size_t b = 0; b < nb; ++b) {  // batch order on every rank
        nll_sum += acc[2 * b];
        tokens += acc[2 * b + 1];
      }
      r.tokens = static_cast<int64_t>(tokens);
      r.sequences = static_cast<int64_t>(s.sequences.size());
      r.loss = nll_sum / tokens;
      r.ppl = std::exp(r.loss);
      out.push_back(r);
    }
  }
  model.set_compute_dtype(compute);
  model.train(was_training);
  return out;
}

}  // namespace openlm
