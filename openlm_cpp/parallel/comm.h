#pragma once
/// The collective-communication interface everything above parallel/ talks to. Only the
/// implementations in parallel/comm*.cpp touch c10d (TCPStore, ProcessGroupGloo/NCCL) and know its
/// version differences.
///
/// Shapes: collectives work on flat (1-D view of contiguous) tensors. For a communicator of size W:
///   all_gather_into(out [W*n], in [n])      out[i*n:(i+1)*n] = rank i's `in`
///   reduce_scatter(out [n], in [W*n], op)    out = op over ranks of in[rank*n:(rank+1)*n]
///   all_reduce(t [any], op)                  t = op over ranks of t, in place
///   broadcast(t [any], root)                 t = root's t, in place
/// Every rank must issue the same collectives in the same order (as with torch.distributed).
///
/// Data types: everything LibTorch has. On Gloo (which in LibTorch 1.13 has no bf16/int16 and no
/// reduce-scatter) bf16 is moved as a bit-identical uint8 view, reductions of bf16/fp16 run in fp32
/// and are rounded once at the end, and reduce-scatter is an all-reduce followed by taking this
/// rank's slice. On NCCL (LibTorch 2.x + CUDA) the native `_allgather_base`/`_reduce_scatter_base`
/// are used.
///
/// Failures: a rank that never arrives, a peer that dies or stops participating, all end in a
/// CommError after ParallelConfig::timeout_s at the latest (rendezvous and every collective), with
/// a message naming this rank, the group, the operation and the cause. Never an endless hang.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "openlm_cpp/core/error.h"

namespace openlm {
struct DistEnv;
struct ParallelConfig;
}  // namespace openlm

namespace openlm::parallel {

/// A collective failed or timed out (the communicator is unusable afterwards: end the process and
/// let the launcher restart the group).
class CommError : public Error {
 public:
  using Error::Error;
};

enum class ReduceOp { Sum, Avg, Max, Min };

/// Payload bytes this rank put on the wire, estimated for ring algorithms (what bandwidth theory
/// uses): all-gather (W-1)/W * |out|, reduce-scatter (W-1)/W * |in| (x2 when done as all-reduce),
/// all-reduce 2(W-1)/W * |t|, broadcast |t| (root) / 0. Sizes in the dtype actually sent.
struct CommStats {
  int64_t all_gather_bytes = 0;
  int64_t reduce_scatter_bytes = 0;
  int64_t all_reduce_bytes = 0;
  int64_t broadcast_bytes = 0;
  int64_t calls = 0;
  int64_t total() const { return all_gather_bytes + reduce_scatter_bytes + all_reduce_bytes + broadcast_bytes; }
};

/// An in-flight collective (for overlapping communication with compute, e.g. FSDP prefetch).
/// The output tensors must not be read, and the inputs not written, until wait() returned.
class CommWork {
 public:
  virtual ~CommWork() = default;
  /// Blocks until done; throws CommError on failure or timeout. Calling it again is a no-op.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  ///< rank within this communicator
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  ///< "single", "gloo", "gloo+nccl"
  /// "world", or the parent's name plus "/g<k>" for the k-th group created from it.
  virtual std::string name() const = 0;

  virtual std::unique_ptr<CommWork> all_gather_into_async(const at::Tensor& out_flat,
                                                          const at::Tensor& in_shard) = 0;
  virtual std::unique_ptr<CommWork> reduce_scatter_async(const at::Tensor& out_shard,
                                                         const at::Tensor& in_flat,
                                                         ReduceOp op = ReduceOp::Sum) = 0;
  virtual std::unique_ptr<CommWork> all_reduce_async(const at::Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void broadcast(const at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  /// Creates a communicator over `ranks` (ranks of this communicator, strictly increasing). Every
  /// rank of this communicator must call it with the same list, in the same order as its other
  /// new_group calls; members get the new communicator (rank = index in `ranks`), others nullptr.
  virtual std::unique_ptr<Communicator> new_group(const std::vector<int>& ranks) = 0;

  // Blocking conveniences.
  void all_gather_into(const at::Tensor& out_flat, const at::Tensor& in_shard) {
    all_gather_into_async(out_flat, in_shard)->wait();
  }
  void reduce_scatter(const at::Tensor& out_shard, const at::Tensor& in_flat, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter_async(out_shard, in_flat, op)->wait();
  }
  void all_reduce(const at::Tensor& t, ReduceOp op = ReduceOp::Sum) { all_reduce_async(t, op)->wait(); }

  /// Every rank's bytes, in rank order (small objects: metadata, config hashes, error strings).
  std::vector<std::string> all_gather_bytes(const std::string& mine);
  /// Sum / max of one number over ranks (losses, counters); runs in fp64 on CPU.
  double all_reduce_scalar(double v, ReduceOp op = ReduceOp::Sum);

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = CommStats{}; }

 protected:
  CommStats stats_;
};

/// The two communicators of HYBRID_SHARD: `shard` = the `group_size` consecutive ranks sharing one
/// copy of the parameters (a node); `replicate` = the ranks holding the same shard in every group.
/// World rank r is shard rank r % group_size of group r / group_size and replicate rank
/// r / group_size of replicate group r % group_size.
struct HybridGroups {
  std::unique_ptr<Communicator> shard;
  std::unique_ptr<Communicator> replicate;
};
/// Collective over `world`; throws ConfigError when group_size does not divide the world size.
HybridGroups make_hybrid_groups(Communicator& world, int group_size);

/// The world communicator for this process: a trivial single-process one when env.world_size is 1,
/// else TCPStore rendezvous at env.master_addr:master_port (rank 0 hosts the store) and a Gloo
/// process group (plus NCCL for CUDA tensors when built with it). Waits at most cfg.timeout_s for
/// all ranks and throws CommError naming the ranks that did not arrive.
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const ParallelConfig& cfg);
/// The c10d-backed communicator even at world size 1 (tests, GPU checks of the NCCL path).
std::unique_ptr<Communicator> make_process_group_communicator(const DistEnv& env, const ParallelConfig& cfg);
/// A communicator of one rank: collectives are copies, new_group({0}) another single one.
std::unique_ptr<Communicator> make_single_communicator();

}  // namespace openlm::parallel
