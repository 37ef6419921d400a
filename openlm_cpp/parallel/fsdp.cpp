#include "openlm_cpp/parallel/fsdp.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/torch_compat.h"
#include "openlm_cpp/parallel/side_stream.h"

namespace openlm::parallel {

Strategy parse_strategy(const std::string& s) {
  if (s == "full_shard") return Strategy::FullShard;
  if (s == "shard_grad_op") return Strategy::ShardGradOp;
  if (s == "no_shard") return Strategy::NoShard;
  if (s == "hybrid_shard") return Strategy::HybridShard;
  throw ConfigError("", "parallel.strategy", 0, "unknown strategy '" + s + "'");
}

struct ShardedModel::Unit {
  int index = 0;
  NamedTensors params;               // the model's parameter tensors (views into `full`)
  std::vector<int64_t> offsets;      // element offset of each parameter in the flat layout
  int64_t numel = 0, padded = 0, shard_numel = 0;
  at::Tensor full;                   // [padded] param dtype; storage freed while not gathered
  at::Tensor master;                 // [shard] fp32, this rank's slice (optimizer updates it)
  at::Tensor grad_shard;             // [shard] fp32, averaged gradient
  at::Tensor flat_grad;              // [padded] fp32 accumulator of this rank's local gradient
  at::Tensor decay_mask;             // [shard] 1 = decay, 0 = exempt; undefined = all decay
  bool gathered = false, stale = true;  // gathered: `full` holds memory (maybe still arriving)
  std::unique_ptr<CommWork> pending;     // an all-gather into `full` issued ahead (prefetch)
  std::size_t received = 0;          // parameters whose gradient arrived in this backward
};

namespace {
bool frees_after_use(Strategy s) { return s == Strategy::FullShard || s == Strategy::HybridShard; }
}  // namespace

ShardedModel::ShardedModel(Transformer& model, Communicator& world, const ParallelConfig& pcfg,
                           at::ScalarType param_dtype, bool (*no_decay)(const std::string&))
    : model_(model), world_(world), strategy_(parse_strategy(pcfg.strategy)), param_dtype_(param_dtype) {
  switch (strategy_) {
    case Strategy::FullShard:
    case Strategy::ShardGradOp:
      shard_ = &world_;
      break;
    case Strategy::NoShard:
      own_shard_ = make_single_communicator();
      shard_ = own_shard_.get();
      break;
    case Strategy::HybridShard: {
      int g = pcfg.shard_group_size > 0 ? static_cast<int>(pcfg.shard_group_size) : world_.size();
      auto groups = make_hybrid_groups(world_, g);
      own_shard_ = std::move(groups.shard);
      own_replicate_ = std::move(groups.replicate);
      shard_ = own_shard_.get();
      replicate_ = own_replicate_.get();
      break;
    }
  }
  const int S = shard_->size(), r = shard_->rank();
  auto groups = model_.unit_parameters();
  at::NoGradGuard no_grad;
  for (std::size_t ui = 0; ui < groups.size(); ++ui) {
    auto u = std::make_unique<Unit>();
    u->index = static_cast<int>(ui);
    u->params = groups[ui];
    for (auto& [n, p] : u->params) {
      u->offsets.push_back(u->numel);
      u->numel += p.numel();
    }
    u->padded = (u->numel + S - 1) / S * S;
    u->shard_numel = u->padded / S;
    const auto dev = u->params.front().second.device();
    // Flatten the (identical on every rank) initial weights; keep only this rank's slice.
    at::Tensor flat = at::zeros({u->padded}, at::TensorOptions().dtype(at::kFloat).device(dev));
    for (std::size_t i = 0; i < u->params.size(); ++i)
      flat.narrow(0, u->offsets[i], u->params[i].second.numel()).copy_(u->params[i].second.reshape({-1}));
    u->master = flat.narrow(0, r * u->shard_numel, u->shard_numel).clone();
    u->grad_shard = at::zeros_like(u->master);
    u->full = at::empty({u->padded}, flat.options().dtype(param_dtype_));
    for (std::size_t i = 0; i < u->params.size(); ++i) {
      at::Tensor& p = u->params[i].second;
      p.set_data(u->full.narrow(0, u->offsets[i], p.numel()).view(p.sizes()));
      const int unit = u->index;
      p.register_hook([this, unit, i](const at::Tensor& g) { on_grad(unit, i, g); });
    }
    compat::free_storage(u->full);
    if (no_decay) {
      at::Tensor mask = at::zeros({u->padded}, flat.options());
      for (std::size_t i = 0; i < u->params.size(); ++i)
        if (!no_decay(u->params[i].first)) mask.narrow(0, u->offsets[i], u->params[i].second.numel()).fill_(1);
      u->decay_mask = mask.narrow(0, r * u->shard_numel, u->shard_numel).clone();
    }
    units_.push_back(std::move(u));
  }
  side_ = std::make_unique<SideStream>(units_.front()->master.device());
  model_.set_unit_hooks(this);
}

ShardedModel::~ShardedModel() { model_.set_unit_hooks(nullptr); }

void ShardedModel::issue_gather(Unit& u) {
  if (u.pending || (u.gathered && !u.stale)) return;
  at::NoGradGuard no_grad;
  // Memory comes from the compute stream, so it is reused only after the compute that frees it.
  if (!u.gathered) compat::realloc_storage(u.full, static_cast<size_t>(u.padded) * u.full.element_size());
  u.gathered = true;
  u.stale = false;
  SideStream::Scope on_side(*side_);  // CUDA: cast + launch on the side stream; CPU: no-op
  u.pending = shard_->all_gather_into_async(u.full, u.master.to(param_dtype_));
}

void ShardedModel::gather(Unit& u) {
  issue_gather(u);
  if (u.pending) {
    auto w = std::move(u.pending);
    w->wait();  // NCCL: the compute stream waits for the collective (no host sync); Gloo: the host
  }
}

void ShardedModel::prefetch(int index) {
  if (index < 0 || index >= static_cast<int>(units_.size())) return;
  issue_gather(*units_[static_cast<std::size_t>(index)]);
}

void ShardedModel::drain() {
  for (auto& u : units_)
    if (u->pending) gather(*u);
}

void ShardedModel::release(Unit& u) {
  if (!u.gathered) return;
  if (u.pending) gather(u);  // never free memory a collective is still writing
  compat::free_storage(u.full);
  u.gathered = false;
  u.stale = true;
}

// Forward runs units 0 (root), 1, ..., L and backward L, ..., 1: while a unit computes, the next
// one's all-gather is already in flight (PyTorch FSDP's forward/backward prefetch), so at most two
// blocks are gathered at a time under FULL_SHARD.
void ShardedModel::before_forward(int u) {
  gather(*units_[static_cast<std::size_t>(u)]);
  prefetch(u + 1);
}

void ShardedModel::after_forward(int u, const at::Tensor& out) {
  if (!frees_after_use(strategy_) || u == 0) return;  // the root stays gathered until its backward
  release(*units_[u]);
  if (out.requires_grad()) {
    Unit* unit = units_[u].get();
    out.register_hook([this, unit](const at::Tensor&) {
      gather(*unit);
      prefetch(unit->index - 1);
    });
  }
}

void ShardedModel::begin_micro_batch(bool last) {
  // FULL_SHARD/HYBRID reduce every micro-batch (nothing unsharded is kept between them);
  // SHARD_GRAD_OP/NO_SHARD accumulate locally and communicate once, after the last one.
  sync_ = last || frees_after_use(strategy_);
}

void ShardedModel::on_grad(int unit, std::size_t i, const at::Tensor& g) {
  Unit& u = *units_[unit];
  at::NoGradGuard no_grad;
  if (!u.flat_grad.defined()) u.flat_grad = at::zeros({u.padded}, u.master.options());
  u.flat_grad.narrow(0, u.offsets[i], g.numel()).add_(g.reshape({-1}).to(at::kFloat));
  if (++u.received < u.params.size()) return;
  u.received = 0;  // the unit's backward is complete
  if (sync_) reduce(u);
  if (frees_after_use(strategy_)) release(u);
}

void ShardedModel::reduce(Unit& u) {
  at::NoGradGuard no_grad;
  const double W = static_cast<double>(world_.size());
  at::Tensor shard = at::empty({u.shard_numel}, u.master.options());
  if (strategy_ == Strategy::NoShard) {
    world_.all_reduce(u.flat_grad, ReduceOp::Sum);
    shard.copy_(u.flat_grad);
  } else {
    shard_->reduce_scatter(shard, u.flat_grad, ReduceOp::Sum);
    if (replicate_) replicate_->all_reduce(shard, ReduceOp::Sum);
  }
  u.grad_shard.add_(shard, 1.0 / W);  // mean over all ranks' micro-batches
  u.flat_grad = at::Tensor();
}

void ShardedModel::finish_backward() {
  drain();
  for (auto& u : units_)
    if (u->flat_grad.defined()) reduce(*u);  // units whose gradients never completed a sync
  // The model's own .grad fields were filled by autograd after our hooks; they are not used.
  for (auto& u : units_)
    for (auto& [n, p] : u->params)
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

std::vector<std::string> ShardedModel::shard_names() const {
  std::vector<std::string> out;
  for (auto& u : units_) out.push_back("unit" + std::to_string(u->index));
  return out;
}
std::vector<at::Tensor> ShardedModel::masters() const {
  std::vector<at::Tensor> out;
  for (auto& u : units_) out.push_back(u->master);
  return out;
}
std::vector<at::Tensor> ShardedModel::grad_shards() const {
  std::vector<at::Tensor> out;
  for (auto& u : units_) out.push_back(u->grad_shard);
  return out;
}
std::vector<at::Tensor> ShardedModel::decay_masks() const {
  std::vector<at::Tensor> out;
  for (auto& u : units_) out.push_back(u->decay_mask);
  return out;
}

double ShardedModel::grad_norm() {
  at::Tensor acc = at::zeros({}, units_.front()->master.options().dtype(at::kDouble));
  for (auto& u : units_) acc += u->grad_shard.to(at::kDouble).pow(2).sum();
  double sq = acc.item<double>();
  if (strategy_ != Strategy::NoShard) sq = shard_->all_reduce_scalar(sq, ReduceOp::Sum);
  return std::sqrt(sq);
}

void ShardedModel::after_optimizer_step() {
  drain();
  for (auto& u : units_) {
    u->grad_shard.zero_();
    u->stale = true;  // SHARD_GRAD_OP / NO_SHARD re-gather at the next forward
  }
}

namespace {
/// Splits a full flat unit tensor into per-parameter tensors named `name + suffix`.
void split_into(const at::Tensor& flat, const NamedTensors& params, const std::vector<int64_t>& offsets,
                const std::string& suffix, NamedTensors& out) {
  for (std::size_t i = 0; i < params.size(); ++i)
    out.emplace_back(params[i].first + suffix,
                     flat.narrow(0, offsets[i], params[i].second.numel()).view(params[i].second.sizes()).cpu().clone());
}
}  // namespace

NamedTensors ShardedModel::full_from_shards(const std::vector<at::Tensor>& shards, const std::string& suffix,
                                            bool keep) {
  NamedTensors out;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    Unit& u = *units_[i];
    at::Tensor full = at::empty({u.padded}, u.master.options());
    shard_->all_gather_into(full, shards[i].to(at::kFloat).contiguous());
    if (keep) split_into(full, u.params, u.offsets, suffix, out);
  }
  return out;
}

std::vector<at::Tensor> ShardedModel::shards_from_full(const NamedTensors& full, const std::string& suffix) const {
  std::map<std::string, at::Tensor> by_name(full.begin(), full.end());
  std::vector<at::Tensor> out;
  for (auto& up : units_) {
    Unit& u = *up;
    at::Tensor flat = at::zeros({u.padded}, u.master.options());
    for (std::size_t i = 0; i < u.params.size(); ++i) {
      auto it = by_name.find(u.params[i].first + suffix);
      if (it == by_name.end()) throw DataError("checkpoint lacks '" + u.params[i].first + suffix + "'");
      if (it->second.numel() != u.params[i].second.numel())
        throw DataError("checkpoint tensor '" + it->first + "' has " + std::to_string(it->second.numel()) +
                        " elements, the model " + std::to_string(u.params[i].second.numel()));
      flat.narrow(0, u.offsets[i], it->second.numel()).copy_(it->second.reshape({-1}));
    }
    out.push_back(flat.narrow(0, shard_->rank() * u.shard_numel, u.shard_numel).clone());
  }
  return out;
}

void ShardedModel::load_masters(const std::vector<at::Tensor>& shards) {
  drain();
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    units_[i]->master.copy_(shards[i]);
    units_[i]->stale = true;
  }
}

void ShardedModel::invalidate() {
  drain();
  for (auto& u : units_) u->stale = true;
}

int ShardedModel::shard_index() const { return shard_->rank(); }
int ShardedModel::shard_count() const { return shard_->size(); }
bool ShardedModel::writes_shard() const {
  if (replicate_) return replicate_->rank() == 0;
  if (strategy_ == Strategy::NoShard) return world_.rank() == 0;
  return true;
}

std::vector<ShardedModel::LocalSlice> ShardedModel::local_slices() const {
  std::vector<LocalSlice> out;
  for (std::size_t ui = 0; ui < units_.size(); ++ui) {
    const Unit& u = *units_[ui];
    const int64_t lo = shard_->rank() * u.shard_numel, hi = lo + u.shard_numel;
    for (std::size_t i = 0; i < u.params.size(); ++i) {
      const int64_t off = u.offsets[i], n = u.params[i].second.numel();
      const int64_t a = std::max(lo, off), b = std::min(hi, off + n);
      if (a >= b) continue;
      auto sizes = u.params[i].second.sizes();
      out.push_back({u.params[i].first, std::vector<int64_t>(sizes.begin(), sizes.end()), a - off, b - off, ui, a - lo});
    }
  }
  return out;
}

ShardMemory ShardedModel::memory(int64_t optimizer_bytes) const {
  ShardMemory m;
  for (auto& u : units_) {
    m.params += u->master.nbytes() + (u->gathered ? u->full.nbytes() : 0);
    m.grads += u->grad_shard.nbytes() + (u->flat_grad.defined() ? u->flat_grad.nbytes() : 0);
  }
  m.optimizer = optimizer_bytes;
  return m;
}

}  // namespace openlm::parallel
