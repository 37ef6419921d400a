#include "openlm_cpp/optim/adamw.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <tuple>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/torch_compat.h"

namespace openlm {

AdamW::AdamW(std::vector<Param> params, const OptimConfig& cfg) : params_(std::move(params)), cfg_(cfg) {
  for (auto& p : params_) {
    m_.push_back(at::zeros_like(p.value));
    v_.push_back(at::zeros_like(p.value));
  }
}

void AdamW::step(double lr, const std::vector<at::Tensor>* grads) {
  at::NoGradGuard no_grad;
  ++step_;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  // Parameters ATen's fused kernel can take (LibTorch 2.x: one pass over p, g, m, v), grouped by
  // device, dtype and weight decay; the rest take the unfused loop below (same arithmetic).
  struct Group {
    std::vector<at::Tensor> p, g, m, v, steps;
    at::Tensor step;  // the step count, one scalar shared by the group (the kernel only reads it)
  };
  std::map<std::tuple<int, int, int, double>, Group> fused;  // device type, index, dtype, wd
  std::vector<std::size_t> plain;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i].value;
    at::Tensor g = grads ? (*grads)[i] : p.grad();
    if (!g.defined()) continue;
    if (!compat::has_fused_adamw(p.device()) || g.scalar_type() != p.scalar_type() || g.sizes() != p.sizes() ||
        g.device() != p.device() || g.is_sparse()) {
      plain.push_back(i);
      continue;
    }
    double wd = params_[i].decay ? cfg_.wd : 0.0;
    if (wd != 0 && params_[i].decay_mask.defined()) {  // per-element decay: applied here, then wd = 0
      p.addcmul_(p, params_[i].decay_mask, -lr * wd);
      wd = 0.0;
    }
    Group& grp = fused[{static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type()), wd}];
    if (!grp.step.defined()) grp.step = at::full({}, static_cast<double>(step_), p.options().dtype(at::kFloat));
    grp.p.push_back(p);
    grp.g.push_back(g);
    grp.m.push_back(m_[i]);
    grp.v.push_back(v_[i]);
    grp.steps.push_back(grp.step);
  }
  for (auto& [key, grp] : fused)
    compat::fused_adamw_(grp.p, grp.g, grp.m, grp.v, grp.steps, lr, b1, b2, std::get<3>(key), cfg_.eps);

  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (std::size_t i : plain) {
    at::Tensor p = params_[i].value;
    at::Tensor g = grads ? (*grads)[i] : p.grad();
    if (params_[i].decay && cfg_.wd != 0) {
      if (params_[i].decay_mask.defined())
        p.addcmul_(p, params_[i].decay_mask, -lr * cfg_.wd);
      else
        p.mul_(1.0 - lr * cfg_.wd);
    }
    m_[i].mul_(b1).add_(g, 1.0 - b1);
    v_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    at::Tensor denom = (v_[i].sqrt() / bc2_sqrt).add_(cfg_.eps);
    p.addcdiv_(m_[i], denom, -step_size);
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].name + ".exp_avg", m_[i]);
    out.emplace_back(params_[i].name + ".exp_avg_sq", v_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t step) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, dst] : {std::pair<const char*, at::Tensor*>{".exp_avg", &m_[i]}, {".exp_avg_sq", &v_[i]}}) {
      auto it = by_name.find(params_[i].name + suffix);
      if (it == by_name.end()) throw DataError("optimizer state lacks '" + params_[i].name + suffix + "'");
      if (it->second.sizes() != dst->sizes())
        throw DataError("optimizer state '" + it->first + "' has shape " + c10::str(it->second.sizes()) +
                        ", expected " + c10::str(dst->sizes()));
      dst->copy_(it->second);
    }
  }
  step_ = step;
}

int64_t AdamW::state_bytes() const {
  int64_t n = 0;
  for (std::size_t i = 0; i < m_.size(); ++i) n += m_[i].nbytes() + v_[i].nbytes();
  return n;
}

bool is_no_decay_name(const std::string& n) {
  auto ends = [&](const char* s) {
    std::string t(s);
    return n.size() >= t.size() && n.compare(n.size() - t.size(), t.size(), t) == 0;
  };
  return ends(".bias") || n.find("norm") != std::string::npos || n.rfind("tok_embeddings", 0) == 0;
}

double grad_norm(const std::vector<at::Tensor>& grads, double (*reduce_sq)(double, void*), void* ctx) {
  at::Tensor acc;  // summed on the grads' device; one host sync at the end
  for (auto& g : grads) {
    if (!g.defined()) continue;
    at::Tensor s = g.to(at::kFloat).pow(2).sum().to(at::kDouble);
    acc = acc.defined() ? acc + s : s;
  }
  double sq = acc.defined() ? acc.item<double>() : 0.0;
  if (reduce_sq) sq = reduce_sq(sq, ctx);
  return std::sqrt(sq);
}

void clip_grads(const std::vector<at::Tensor>& grads, double max_norm, double norm) {
  if (max_norm <= 0) return;
  double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  at::NoGradGuard no_grad;
  for (auto& g : grads)
    if (g.defined()) g.mul_(coef);
}

}  // namespace openlm
