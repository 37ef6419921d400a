// One optimizer step of a run (forward, backward, reduction, clipping, update), validation, and
// the averages' weights: the pieces the loop in trainer.cpp calls. One code path for one process
// and every sharding strategy: a run always has a communicator (a single-process one for one
// rank), and only the gradient hand-over differs between sharded and whole parameters.
#include <ATen/ATen.h>

#include <cmath>

#include "openlm_cpp/core/log.h"
#include "openlm_cpp/train/loss.h"
#include "openlm_cpp/train/run_state.h"

namespace openlm {
namespace {

/// The weights each micro-batch's loss gets: 1 / accum, or, with instruction data (a loss mask),
/// the micro-batch's share of the global batch's target tokens times the world size (gradients
/// are averaged over ranks, so sum_i n_i * ce_i / N results for any world and micro-batch size).
std::vector<double> micro_batch_weights(Run& r, const MicroBatches& mbs) {
  std::vector<double> weight(mbs.size(), 1.0 / static_cast<double>(r.accum));
  if (!mbs.front().second.defined()) return weight;
  std::vector<double> count;
  double local = 0;
  for (auto& [b, m] : mbs) {
    count.push_back(m.slice(1, 1).sum().item<double>());
    local += count.back();
  }
  const double global = r.comm->all_reduce_scalar(local);
  const double W = static_cast<double>(r.env.world_size);
  for (std::size_t i = 0; i < count.size(); ++i) weight[i] = global > 0 ? count[i] * W / global : 0.0;
  return weight;
}

/// Averaged gradients -> norm, clipping, AdamW update; returns the norm before clipping.
double optimizer_step(Run& r, double lr) {
  const double clip = r.cfg.optim.grad_clip_norm;
  if (r.sharded) {
    r.sharded->finish_backward();
    auto grads = r.sharded->grad_shards();
    const double norm = r.sharded->grad_norm();
    clip_grads(grads, clip, norm);
    r.opt->step(lr, &grads);
    r.sharded->after_optimizer_step();
    return norm;
  }
  std::vector<at::Tensor> grads;
  for (auto& p : r.opt->params()) grads.push_back(p.value.grad());
  const double norm = grad_norm(grads);
  clip_grads(grads, clip, norm);
  r.opt->step(lr);
  for (auto& p : r.opt->params())
    if (p.value.grad().defined()) p.value.mutable_grad().zero_();
  return norm;
}

}  // namespace

bool next_micro_batches(Run& r, MicroBatches& out) {
  out.clear();
  at::Tensor batch, mask;
  for (int64_t micro = 0; micro < r.accum; ++micro) {
    if (!r.data->next(batch, mask)) return false;
    out.emplace_back(batch, mask);  // fresh tensors each call (batch_source.h)
  }
  return true;
}

StepStats train_step(Run& r, const MicroBatches& mbs, double lr) {
  const TrainConfig& cfg = r.cfg;
  const bool masked = mbs.front().second.defined();
  const std::vector<double> weight = micro_batch_weights(r, mbs);
  const double W = static_cast<double>(r.env.world_size), inv_accum = 1.0 / static_cast<double>(r.accum);
  at::Tensor loss_sum, z_sum;  // summed on the device: one host sync per step, not per micro-batch
  for (std::size_t micro = 0; micro < mbs.size(); ++micro) {
    const auto& [b, m] = mbs[micro];
    if (r.sharded) r.sharded->begin_micro_batch(static_cast<int64_t>(micro) == r.accum - 1);
    at::Tensor tokens = b.to(r.device, /*non_blocking=*/true);
    at::Tensor inputs = tokens.slice(1, 0, -1), targets = tokens.slice(1, 1);
    if (masked)  // instruction data: only response tokens (and their eos) are targets
      targets = targets.masked_fill(m.slice(1, 1).to(r.device, /*non_blocking=*/true).logical_not(), -100);
    HeadLoss lp = fused_head_loss(r.model->forward_hidden(inputs), r.model->output_weight(), targets, cfg.optim.z_loss,
                                  masked ? weight[micro] : inv_accum, inv_accum, 0, r.model->compute_dtype());
    lp.objective.backward();
    // This micro-batch's share of the global batch's targets: weight / W (1 / (accum * W) unmasked).
    at::Tensor ce = lp.ce.detach() * (weight[micro] / W);
    loss_sum = loss_sum.defined() ? loss_sum + ce : ce;
    z_sum = z_sum.defined() ? z_sum + lp.z.detach() : lp.z.detach();
  }
  StepStats s;
  s.loss = r.comm->all_reduce_scalar(loss_sum.item<double>());  // the shares of all ranks sum to 1
  s.z_loss = r.comm->all_reduce_scalar(z_sum.item<double>() * inv_accum) / W;
  if (!std::isfinite(s.loss)) return s;  // the caller stops before the update reaches the weights
  wait_for_live_save(r);                 // an async checkpoint still reading the weights
  s.grad_norm = optimizer_step(r, lr);
  return s;
}

void run_validation(Run& r, int64_t step) {
  if (!r.validator) return;
  for (const ValidationResult& v : r.validator->run(*r.model, r.comm.get())) {
    r.sinks.log({{"kind", "eval"},
                 {"step", step},
                 {"source", v.source},
                 {"loss", v.loss},
                 {"ppl", v.ppl},
                 {"tokens", v.tokens},
                 {"sequences", v.sequences}});
  }
}

std::vector<std::size_t> optimizer_slots(const Run& r) {
  const auto& params = r.opt->params();
  std::vector<std::size_t> slots;
  for (auto& [n, t] : r.model->named_parameters()) {
    std::size_t i = 0;
    while (i < params.size() && !params[i].value.is_same(t)) ++i;
    slots.push_back(i);  // every parameter is there: build() registered each unique tensor
  }
  return slots;
}

std::vector<std::pair<std::string, NamedTensors>> full_averages(Run& r) {
  std::vector<std::pair<std::string, NamedTensors>> out;
  if (!r.averages) return out;
  for (std::size_t k = 0; k < r.averages->size(); ++k) {
    NamedTensors full;
    if (r.sharded) {
      full = r.sharded->full_from_shards(r.averages->averages(k), "", /*keep=*/r.env.rank == 0);
    } else {
      // Whole parameters: the averages follow the optimizer's (de-duplicated) parameter order.
      const auto named = r.model->named_parameters();
      const auto slots = optimizer_slots(r);
      for (std::size_t j = 0; j < named.size(); ++j) full.emplace_back(named[j].first, r.averages->average(k, slots[j]));
    }
    out.emplace_back(r.averages->name(k), std::move(full));
  }
  return out;
}

}  // namespace openlm
