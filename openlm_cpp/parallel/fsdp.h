#pragma once
/// FSDP-style sharded data parallelism with PyTorch FSDP's strategy names.
///
/// Unit = one transformer block, plus a root unit (embeddings, final norm, output). Each unit has
/// one flat parameter of `numel` elements padded to a multiple of the shard count S; every rank
/// owns an fp32 master shard [padded/S], its gradient shard and (through AdamW) its optimizer
/// state. The model's parameter tensors are views into a per-unit full buffer [padded] whose
/// memory is allocated only while needed:
///   FULL_SHARD     gathered before a unit's forward, freed after it (the root stays until its
///                  backward), gathered again when backward reaches the unit, freed when the unit's
///                  gradients are complete; gradients reduce-scattered per unit, every micro-batch.
///                  The next unit's all-gather is issued before the current unit runs (prefetch;
///                  on CUDA from a side stream), so two blocks may be gathered at once.
///   SHARD_GRAD_OP  gathered at the first forward of a step, kept until the optimizer step;
///                  gradients accumulate unsharded over micro-batches (no communication, like
///                  no_sync) and are reduce-scattered after the last micro-batch.
///   NO_SHARD       S = 1: replicated masters, gradients all-reduced after the last micro-batch.
///   HYBRID_SHARD   FULL_SHARD inside groups of shard_group_size ranks, gradient shards then
///                  all-reduced across groups.
/// Why hooks instead of a custom autograd Function per unit: the model exposes unit boundaries
/// (UnitHooks), a tensor hook on a unit's output re-gathers parameters right before backward enters
/// the unit (this also serves activation checkpointing's recomputation), and per-parameter gradient
/// hooks tell when a unit's gradients are complete, so reduction happens unit by unit during
/// backward without changing the model code.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/parallel/comm.h"

namespace openlm::parallel {

class SideStream;

enum class Strategy { FullShard, ShardGradOp, NoShard, HybridShard };
Strategy parse_strategy(const std::string& s);

/// Per-rank bytes held by the sharded state (persistent: masters, gradient shards, optimizer).
struct ShardMemory {
  int64_t params = 0;     ///< fp32 master shards + currently allocated full buffers
  int64_t grads = 0;      ///< gradient shards (+ unsharded accumulators in use)
  int64_t optimizer = 0;  ///< optimizer moments of the shards
  int64_t total() const { return params + grads + optimizer; }
};

class ShardedModel : public UnitHooks {
 public:
  /// `model` holds identical weights on every rank (same seed); `world` must outlive this.
  /// `no_decay_mask` marks parameters exempt from weight decay by name (may be empty).
  ShardedModel(Transformer& model, Communicator& world, const ParallelConfig& pcfg, at::ScalarType param_dtype,
               bool (*no_decay)(const std::string&) = nullptr);
  ~ShardedModel() override;

  void before_forward(int u) override;
  void after_forward(int u, const at::Tensor& out) override;

  /// Call before each micro-batch; `last` marks the final micro-batch of the optimizer step.
  void begin_micro_batch(bool last);
  /// Call after the final micro-batch's backward: completes pending reductions.
  void finish_backward();

  /// What the optimizer updates: one fp32 master shard per unit ("unit<u>"), its averaged
  /// gradient shard, and a per-element decay mask (undefined = decay everything).
  std::vector<std::string> shard_names() const;
  std::vector<at::Tensor> masters() const;
  std::vector<at::Tensor> grad_shards() const;
  std::vector<at::Tensor> decay_masks() const;
  /// Global L2 norm of the averaged gradient over all shards (collective).
  double grad_norm();
  /// After the optimizer updated the masters: zero gradient shards, mark parameters stale.
  void after_optimizer_step();

  /// Collective: per-unit shards (masters, or any same-shaped state such as AdamW moments) to
  /// full per-parameter CPU tensors named `<param><suffix>`. With keep = false this rank takes
  /// part in the gathers but keeps nothing (only one unit's flat buffer at a time) and gets {}.
  NamedTensors full_from_shards(const std::vector<at::Tensor>& shards, const std::string& suffix, bool keep = true);
  /// This rank's per-unit shards of full per-parameter tensors `<param><suffix>` saved with any
  /// world size or strategy (resharding). Throws DataError naming a missing or mis-sized tensor.
  std::vector<at::Tensor> shards_from_full(const NamedTensors& full, const std::string& suffix) const;
  /// Replaces the masters (e.g. after loading a checkpoint).
  void load_masters(const std::vector<at::Tensor>& shards);

  /// The part of one parameter held in this rank's master shard of unit `unit`: flat elements
  /// [begin, end) of the parameter, at `shard_offset` in the shard. Checkpoints store these slices
  /// per rank (no gather) and reassemble them for any other layout.
  struct LocalSlice {
    std::string name;
    std::vector<int64_t> shape;
    int64_t begin = 0, end = 0;
    std::size_t unit = 0;
    int64_t shard_offset = 0;
  };
  std::vector<LocalSlice> local_slices() const;
  /// Index of this rank's shard and the number of distinct shards (1 for NO_SHARD, the group size
  /// for HYBRID_SHARD); `writes_shard()` is true on exactly one rank per distinct shard.
  int shard_index() const;
  int shard_count() const;
  bool writes_shard() const;
  /// Marks every unit's gathered parameters out of date (after the masters changed in place).
  void invalidate();

  ShardMemory memory(int64_t optimizer_bytes) const;
  Strategy strategy() const { return strategy_; }
  Communicator& world() { return world_; }

 private:
  struct Unit;
  void issue_gather(Unit& u);  ///< starts a unit's all-gather (no wait)
  void gather(Unit& u);        ///< issues if needed and waits
  void prefetch(int index);    ///< issue_gather of unit `index` when it exists
  void drain();                ///< waits for every prefetch in flight
  void release(Unit& u);
  void on_grad(int unit, std::size_t param, const at::Tensor& g);
  void reduce(Unit& u);

  Transformer& model_;
  Communicator& world_;
  std::unique_ptr<Communicator> own_shard_, own_replicate_;
  Communicator* shard_ = nullptr;      // ranks sharing one copy of the parameters
  Communicator* replicate_ = nullptr;  // hybrid: same shard in other groups
  Strategy strategy_;
  at::ScalarType param_dtype_;
  std::vector<std::unique_ptr<Unit>> units_;
  std::unique_ptr<SideStream> side_;  // CUDA stream for gathers (no-op on CPU)
  bool sync_ = true;  // reduce gradients in this micro-batch's backward
};

}  // namespace openlm::parallel
