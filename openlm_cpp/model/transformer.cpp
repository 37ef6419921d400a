#include "openlm_cpp/model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <set>
#include <unordered_set>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/modules.h"

namespace openlm {

void trunc_normal_(at::Tensor& t, double std) {
  // Inverse-CDF sampling of N(0, std) restricted to [-3 std, 3 std].
  at::NoGradGuard no_grad;
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  double lo = 2 * cdf(-3.0) - 1, hi = 2 * cdf(3.0) - 1;
  t.uniform_(lo, hi).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-3 * std, 3 * std);
}

void TransformerModule::init_weights() {
  // OpenLM's scheme: std 1/sqrt(d) for embeddings, output, in_proj, w12; residual projections
  // scaled by 1/sqrt(2*(layer+1)). Norm gains 1, biases 0 (set at construction).
  const double d = static_cast<double>(cfg.dim);
  const double s = 1.0 / std::sqrt(d);
  trunc_normal_(tok_embeddings->weight, s);
  for (auto& b : layers) {
    const double depth = std::sqrt(2.0 * static_cast<double>(b->layer_id + 1));
    trunc_normal_(b->attention->in_proj->weight, s);
    trunc_normal_(b->attention->out_proj->weight, s / depth);
    trunc_normal_(b->feed_forward->w12->weight, s);
    trunc_normal_(b->feed_forward->w3->weight,
                  1.0 / std::sqrt(static_cast<double>(b->feed_forward->hidden)) / depth);
  }
  if (!cfg.weight_tying) trunc_normal_(output->weight, s);
}

Transformer::Transformer(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
  validate_model(cfg);
  m_ = std::make_shared<TransformerModule>(cfg);
  at::manual_seed(seed);
  m_->init_weights();
}

Transformer::~Transformer() = default;

at::Tensor Transformer::forward(const at::Tensor& tokens, KVCache* cache) { return m_->forward(tokens, cache); }

at::Tensor Transformer::forward_hidden(const at::Tensor& tokens) {
  at::Tensor h = m_->forward_hidden(tokens, nullptr);
  if (m_->hooks) m_->hooks->after_forward(0, h);
  return h;
}

at::Tensor Transformer::output_weight() const { return m_->output->weight; }

NamedTensors Transformer::named_parameters() const {
  NamedTensors out;
  for (auto& kv : m_->named_parameters(true)) out.emplace_back(kv.key(), kv.value());
  return out;
}

std::vector<at::Tensor> Transformer::parameters() const {
  std::vector<at::Tensor> out;
  std::unordered_set<const void*> seen;
  for (auto& kv : m_->named_parameters(true))
    if (seen.insert(kv.value().unsafeGetTensorImpl()).second) out.push_back(kv.value());
  return out;
}

std::vector<NamedTensors> Transformer::unit_parameters() const {
  std::vector<NamedTensors> units(static_cast<std::size_t>(cfg_.n_layers) + 1);
  std::unordered_set<const void*> seen;
  for (auto& kv : m_->named_parameters(true)) {
    if (!seen.insert(kv.value().unsafeGetTensorImpl()).second) continue;  // tied: once
    const std::string& n = kv.key();
    std::size_t u = 0;
    if (n.rfind("layers.", 0) == 0) u = std::stoul(n.substr(7, n.find('.', 7) - 7)) + 1;
    units[u].emplace_back(n, kv.value());
  }
  return units;
}

void Transformer::set_unit_hooks(UnitHooks* hooks) { m_->hooks = hooks; }

void Transformer::load_named(const NamedTensors& tensors, bool allow_missing) {
  auto params = m_->named_parameters(true);
  std::set<std::string> provided;
  std::string errors;
  at::NoGradGuard no_grad;
  for (auto& [name, t] : tensors) {
    provided.insert(name);
    auto* p = params.find(name);
    if (!p) {
      errors += "\n  unexpected tensor '" + name + "'";
      continue;
    }
    if (p->sizes() != t.sizes()) {
      errors += "\n  '" + name + "': shape " + c10::str(t.sizes()) + " but the model has " + c10::str(p->sizes());
      continue;
    }
    p->copy_(t);
  }
  if (!allow_missing)
    for (auto& kv : params)
      if (!provided.count(kv.key())) errors += "\n  missing tensor '" + kv.key() + "'";
  if (!errors.empty()) throw DataError("weights do not match model '" + cfg_.name + "':" + errors);
}

void Transformer::set_compute_dtype(at::ScalarType dt) { m_->run.compute = dt; }
at::ScalarType Transformer::compute_dtype() const { return m_->run.compute; }
void Transformer::set_grad_checkpointing(bool on, int64_t every, bool attention_only) {
  m_->run.grad_checkpointing = on;
  m_->run.ckpt_every = std::max<int64_t>(1, every);
  m_->run.ckpt_attention_only = attention_only;
}

void Transformer::to(const at::Device& device, at::ScalarType param_dtype) {
  m_->to(device, param_dtype);
  m_->run.param = param_dtype;
  if (m_->run.compute == at::kFloat && param_dtype != at::kFloat) m_->run.compute = param_dtype;
}

at::Device Transformer::device() const { return m_->tok_embeddings->weight.device(); }
void Transformer::train(bool on) { m_->train(on); }
TransformerModule& Transformer::module() { return *m_; }

}  // namespace openlm
