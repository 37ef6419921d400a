#include "openlm_cpp/train/inference.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <filesystem>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/hf_format.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/train/trainer.h"

namespace stdfs = std::filesystem;

namespace openlm {
namespace {

/// The resolved config of a run: <dir>/config.json, a checkpoint's metadata.json "config", or
/// those of the parent directories (a checkpoint inside a run).
TrainConfig find_config(const stdfs::path& start) {
  for (stdfs::path d = start; !d.empty(); d = d.parent_path()) {
    if (stdfs::exists(d / "metadata.json")) {
      const std::string meta_path = (d / "metadata.json").string();
      auto meta = nlohmann::json::parse(openlm::fs::read_file(meta_path), nullptr, /*allow_exceptions=*/false);
      if (meta.is_discarded()) throw DataError(meta_path + ": not valid JSON");
      // The embedded config is parsed in memory: no temporary file (docs/CHECKPOINT_FORMAT.md).
      if (meta.is_object() && meta.contains("config"))
        return load_train_recipe_text(meta["config"].dump(), meta_path, d.string());
    }
    if (stdfs::exists(d / "config.json")) return load_train_recipe((d / "config.json").string());
    if (d == d.parent_path()) break;
  }
  throw ConfigError(start.string(), "", 0, "no config.json or checkpoint metadata.json found here or above");
}

}  // namespace

std::string weights_source(const std::string& source, const std::string& weights) {
  if (weights.empty() || weights == "model") return source;
  const stdfs::path file = stdfs::path(source) / ("model_" + weights + ".safetensors");
  if (stdfs::is_regular_file(file)) return file.string();
  std::string have;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(source, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("model_", 0) == 0 && e.path().extension() == ".safetensors")
      have += (have.empty() ? "" : ", ") + n.substr(6, n.size() - 6 - 12);
  }
  throw ConfigError("--weights", "", 0,
                    "'" + source + "' has no weight average '" + weights + "' (no " + file.string() + "; " +
                        (have.empty() ? std::string("the run kept none: recipe key averagers")
                                      : "it has: model, " + have) +
                        ")");
}

ModelConfig model_config_of(const std::string& source) {
  if (!stdfs::exists(source)) throw ConfigError(source, "init_from", 0, "no such file or directory");
  if (checkpoint::is_hf_dir(source)) return hf::read_config(source).model;
  checkpoint::require_own_config(source);
  stdfs::path p(source);
  return find_config(stdfs::is_directory(p) ? p : p.parent_path()).model;
}

LoadedModel load_for_inference(const std::string& source, const std::string& tokenizer_override, int cuda_device) {
  LoadedModel out;
  stdfs::path p(source);
  if (!stdfs::exists(p)) throw ConfigError(source, "", 0, "no such file or directory");
  if (checkpoint::is_hf_dir(source)) {  // a Hugging Face directory (checkpoint/hf_import.h)
    auto im = checkpoint::load_hf(source);
    out.config = checkpoint::native_config(im, source);
    out.model = std::make_unique<Transformer>(im.model, 0);
    out.model->load_named(NamedTensors(im.tensors.begin(), im.tensors.end()));
  } else {
    checkpoint::require_own_config(source);  // not a parent's config.json for an HF dir without one
    out.config = find_config(stdfs::is_directory(p) ? p : p.parent_path());
    check_weights_fit(out.config.model, out.config.source_file);  // before allocating the model
    out.model = std::make_unique<Transformer>(out.config.model, 0);
    auto tensors = checkpoint::load_model_weights(source);
    out.model->load_named(NamedTensors(tensors.begin(), tensors.end()));
  }
  if (at::hasCUDA()) out.model->to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device)), at::kFloat);
  out.model->train(false);
  std::string tok = tokenizer_override.empty() ? out.config.tokenizer.path : tokenizer_override;
  // An override is typed by its file (a .model or a tokenizer.json), not by the run's config.
  if (!tok.empty()) out.tokenizer = load_tokenizer(tokenizer_override.empty() ? out.config.tokenizer.type : "auto", tok);
  return out;
}

void score_sequence(Transformer& model, const std::vector<int64_t>& s, int64_t stride, EvalResult& r,
                    const std::string& label) {
  const int64_t L = model.config().seq_len;
  const int64_t V = model.config().vocab_size;
  if (stride < 0 || stride > L)
    throw ConfigError("--stride", "", 0,
                      "must be in [1, seq_len = " + std::to_string(L) + "] (0 = seq_len); got " + std::to_string(stride));
  const int64_t S = stride > 0 ? stride : L;
  const int64_t N = static_cast<int64_t>(s.size());
  if (N < 2)
    throw DataError(label + ": " + std::to_string(N) + " token" + (N == 1 ? "" : "s") +
                    "; a sequence needs at least 2 (the first token is only context, every later one is scored)");
  for (auto id : s)
    if (id < 0 || id >= V)
      throw DataError(label + ": token id " + std::to_string(id) + " outside the vocabulary [0, " +
                      std::to_string(V) + ")");
  at::NoGradGuard no_grad;
  model.train(false);
  at::Tensor all = at::tensor(s, at::kLong).to(model.device());
  int64_t scored_to = 1;  // the first target not scored yet
  for (int64_t b = 0;; b += S) {
    const int64_t end = std::min(b + L + 1, N);  // window tokens [b, end)
    at::Tensor w = all.slice(0, b, end).view({1, -1});
    at::Tensor logits = model.forward(w.slice(1, 0, -1)).to(at::kFloat).view({-1, V});  // targets b+1 .. end-1
    const int64_t first = scored_to - (b + 1);                                           // row of the first new target
    at::Tensor ce = at::cross_entropy_loss(logits.slice(0, first), w.slice(1, first + 1).reshape({-1}), {},
                                           at::Reduction::Sum, -100);
    r.sum_nll += ce.item<double>();
    r.tokens += end - scored_to;
    scored_to = end;
    ++r.windows;
    if (end == N) break;
  }
  ++r.sequences;
  r.loss = r.sum_nll / static_cast<double>(r.tokens);
}

EvalResult evaluate_sequences(Transformer& model, const std::vector<std::vector<int64_t>>& seqs, int64_t stride) {
  EvalResult r;
  for (std::size_t i = 0; i < seqs.size(); ++i) score_sequence(model, seqs[i], stride, r, "sequence " + std::to_string(i + 1));
  return r;
}

at::Tensor sequence_logits(Transformer& model, const std::vector<std::vector<int64_t>>& seqs) {
  if (seqs.empty()) throw DataError("logits: no token sequences");
  const int64_t V = model.config().vocab_size;
  const int64_t T = static_cast<int64_t>(seqs[0].size());
  std::vector<int64_t> flat;
  flat.reserve(seqs.size() * seqs[0].size());
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (static_cast<int64_t>(seqs[i].size()) != T)
      throw DataError("logits need sequences of equal length: sequence 1 has " + std::to_string(T) +
                      " tokens, sequence " + std::to_string(i + 1) + " has " + std::to_string(seqs[i].size()));
    for (auto id : seqs[i])
      if (id < 0 || id >= V)
        throw DataError("sequence " + std::to_string(i + 1) + ": token id " + std::to_string(id) +
                        " outside the vocabulary [0, " + std::to_string(V) + ")");
    flat.insert(flat.end(), seqs[i].begin(), seqs[i].end());
  }
  if (T > model.config().seq_len)
    throw DataError("logits: sequences of " + std::to_string(T) + " tokens exceed the model's seq_len " +
                    std::to_string(model.config().seq_len));
  at::NoGradGuard no_grad;
  model.train(false);
  at::Tensor t = at::tensor(flat, at::kLong).view({static_cast<int64_t>(seqs.size()), T}).to(model.device());
  return model.forward(t).to(at::kFloat).to(at::kCPU).contiguous();
}

}  // namespace openlm
