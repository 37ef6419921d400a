// The c10d-backed Communicator: TCPStore rendezvous, ProcessGroupGloo for CPU tensors (and any
// tensor when NCCL is absent), ProcessGroupNCCL for CUDA tensors when LibTorch was built with it.
// This file and comm.cpp are the only places that include c10d headers.
//
// c10d facts this relies on (LibTorch 1.13 .. 2.x, same API for what is used here):
//  - ProcessGroupGloo/NCCL have allgather(list), allreduce, broadcast, barrier in every version.
//  - Gloo's abilities differ by version (measured, table in docs/DISTRIBUTED.md): 1.13 has no
//    bf16/int16/bool in any collective, no _allgather_base and no reduce-scatter; 2.15 has bf16 and
//    bool, _allgather_base and _reduce_scatter_base (int16 still missing). kGlooModern picks the
//    route once; versions between were not measured and take the 1.13 route, which works anywhere.
//  - Gloo collectives honour Options::timeout per send/recv, so a silent peer ends in an error.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (moved here in fmt 11)
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <functional>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/torch_compat.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/comm_internal.h"
#include "openlm_cpp/parallel/comm_rendezvous.h"

namespace openlm::parallel {
namespace {

/// Gloo with bf16/bool collectives, _allgather_base and _reduce_scatter_base (see the top).
constexpr bool kGlooModern = OPENLM_TORCH_AT_LEAST(2, 15);

std::string cause_of(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return c10d::ReduceOp::MAX;
    case ReduceOp::Min: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;  // Avg = sum, then divide (Gloo has no AVG)
  }
}

/// Types Gloo moves and reduces natively (1.13: no bf16, no int16, no bool; 2.15: no int16).
bool gloo_native(at::ScalarType t) {
  switch (t) {
    case at::kFloat: case at::kDouble: case at::kHalf: case at::kChar: case at::kByte:
    case at::kInt: case at::kLong:
      return true;
    case at::kBFloat16: case at::kBool:
      return kGlooModern;
    default:
      return false;
  }
}

/// The dtype a reduction runs in: 16-bit floats in fp32 (one rounding at the end), int16 in int32.
at::ScalarType reduce_type(at::ScalarType t) {
  if (t == at::kBFloat16 || t == at::kHalf) return at::kFloat;
  if (t == at::kShort) return at::kInt;
  return t;
}

/// A flat view of `t` in a dtype Gloo can move: itself, or its bytes (bit-identical round trip).
at::Tensor movable(const at::Tensor& t) {
  at::Tensor flat = t.view({-1});
  return gloo_native(t.scalar_type()) ? flat : flat.view(at::kByte);
}

struct Shared {
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<::gloo::transport::Device> device;
  Ms timeout{0};
  bool nccl = false;
};

/// Completion of one or more c10d works plus an optional epilogue (slice, cast back, divide).
class PgWork : public CommWork {
 public:
  /// `device_side`: NCCL works, whose wait() only orders the current CUDA stream after the
  /// collective; a host-side timeout there would block the CPU until the GPU finished (no overlap),
  /// so their timeout is left to the NCCL watchdog.
  PgWork(std::string where, Ms timeout, std::vector<c10::intrusive_ptr<c10d::Work>> works,
         std::function<void()> finish, bool device_side)
      : where_(std::move(where)), timeout_(timeout), works_(std::move(works)), finish_(std::move(finish)),
        device_side_(device_side) {}
  void wait() override {
    if (done_) return;
    done_ = true;
    try {
      // Gloo's own per-operation timeout normally fires first and says more; this is the backstop.
      for (auto& w : works_) {
        if (device_side_)
          w->wait();
        else
          w->wait(timeout_ + Ms(2000));
      }
      if (finish_) finish_();
    } catch (const std::exception& e) {
      throw CommError(fmt::format("{} failed: {} (timeout {} s; a peer may have died or stopped calling "
                                  "collectives: check the other ranks' output)",
                                  where_, cause_of(e), timeout_.count() / 1000.0));
    }
  }

 private:
  std::string where_;
  Ms timeout_;
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  std::function<void()> finish_;
  bool device_side_;
  bool done_ = false;
};

class PgCommunicator : public Communicator {
 public:
  PgCommunicator(std::shared_ptr<Shared> shared, std::string name, int rank, int size)
      : shared_(std::move(shared)), name_(std::move(name)), rank_(rank), size_(size) {
    auto store = c10::make_intrusive<c10d::PrefixStore>("openlm/" + name_, shared_->store);
    try {
      auto opts = c10d::ProcessGroupGloo::Options::create(shared_->timeout);
      opts->devices.push_back(shared_->device);
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank_, size_, opts);
#ifdef USE_C10D_NCCL
      if (shared_->nccl) {
        auto nopts = c10d::ProcessGroupNCCL::Options::create();
        nopts->timeout = shared_->timeout;
        nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(
            c10::make_intrusive<c10d::PrefixStore>("nccl", store), rank_, size_, nopts);
      }
#endif
    } catch (const std::exception& e) {
      throw CommError(fmt::format("creating process group '{}' on rank {} of {} failed within {} s: {}", name_,
                                  rank_, size_, shared_->timeout.count() / 1000.0, cause_of(e)));
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return shared_->nccl ? "gloo+nccl" : "gloo"; }
  std::string name() const override { return name_; }

  std::unique_ptr<CommWork> all_gather_into_async(const at::Tensor& out, const at::Tensor& in) override {
    detail::check_all_gather(*this, out, in);
    ++stats_.calls;
    if (in.numel() == 0) return std::make_unique<detail::DoneWork>();
    at::Tensor src = in.contiguous();
    return run("all_gather_into", [&]() -> std::unique_ptr<CommWork> {
#ifdef USE_C10D_NCCL
      if (use_nccl(in)) {
        at::Tensor dst = out.view({-1}), s = src.view({-1});
        stats_.all_gather_bytes += (size_ - 1) * s.nbytes();
        return work("all_gather_into", {nccl_->_allgather_base(dst, s)}, nullptr, true);
      }
#endif
      at::Tensor s = movable(src), dst = movable(out);
      stats_.all_gather_bytes += (size_ - 1) * s.nbytes();
      if constexpr (kGlooModern) return work("all_gather_into", {gloo_->_allgather_base(dst, s)}, nullptr);
      const int64_t n = s.numel();
      std::vector<std::vector<at::Tensor>> outputs(1);
      for (int i = 0; i < size_; ++i) outputs[0].push_back(dst.narrow(0, i * n, n));
      std::vector<at::Tensor> inputs{s};
      return work("all_gather_into", {gloo_->allgather(outputs, inputs)}, nullptr);
    });
  }

  std::unique_ptr<CommWork> reduce_scatter_async(const at::Tensor& out, const at::Tensor& in,
                                                 ReduceOp op) override {
    detail::check_reduce_scatter(*this, out, in, op);
    ++stats_.calls;
    if (in.numel() == 0) return std::make_unique<detail::DoneWork>();
    const int w = size_;
    return run("reduce_scatter", [&]() -> std::unique_ptr<CommWork> {
#ifdef USE_C10D_NCCL
      if (use_nccl(in)) {
        at::Tensor src = in.contiguous().view({-1}), dst = out.view({-1});
        c10d::ReduceScatterOptions o;
        o.reduceOp = to_c10d(op);
        stats_.reduce_scatter_bytes += (w - 1) * dst.nbytes();
        auto finish = op == ReduceOp::Avg ? std::function<void()>([dst, w] { dst.div_(w); }) : nullptr;
        return work("reduce_scatter", {nccl_->_reduce_scatter_base(dst, src, o)}, finish, true);
      }
#endif
      const at::ScalarType rt = reduce_type(in.scalar_type());
      at::Tensor dst = out.view({-1});
      if constexpr (kGlooModern) {  // native reduce-scatter, in the reduction dtype
        at::Tensor src = in.contiguous().view({-1}).to(rt);
        at::Tensor res = dst.scalar_type() == rt ? dst : at::empty({dst.numel()}, dst.options().dtype(rt));
        c10d::ReduceScatterOptions o;
        o.reduceOp = to_c10d(op);
        stats_.reduce_scatter_bytes += (w - 1) * res.nbytes();
        return work("reduce_scatter", {gloo_->_reduce_scatter_base(res, src, o)}, [res, dst, w, op] {
          if (op == ReduceOp::Avg) res.div_(w);
          if (!res.is_same(dst)) dst.copy_(res);
        });
      }
      // All-reduce a private copy in the reduction dtype, then keep this rank's slice.
      at::Tensor buf = in.reshape({-1}).to(rt, false, /*copy=*/true);
      std::vector<at::Tensor> v{buf};
      c10d::AllreduceOptions o;
      o.reduceOp = to_c10d(op);
      stats_.reduce_scatter_bytes += 2 * (w - 1) * buf.nbytes() / w;
      const int64_t n = dst.numel(), r = rank_;
      return work("reduce_scatter", {gloo_->allreduce(v, o)}, [buf, dst, n, r, w, op] {
        at::Tensor mine = buf.narrow(0, r * n, n);
        if (op == ReduceOp::Avg) mine.div_(w);
        dst.copy_(mine);
      });
    });
  }

  std::unique_ptr<CommWork> all_reduce_async(const at::Tensor& t, ReduceOp op) override {
    detail::check_in_place(*this, "all_reduce", t);
    detail::check_reduce_dtype(*this, "all_reduce", t, op);
    ++stats_.calls;
    if (t.numel() == 0) return std::make_unique<detail::DoneWork>();
    const int w = size_;
    return run("all_reduce", [&]() -> std::unique_ptr<CommWork> {
      c10d::AllreduceOptions o;
      o.reduceOp = to_c10d(op);
      at::Tensor flat = t.view({-1});
      at::ScalarType rt = reduce_type(t.scalar_type());
      bool native = rt == t.scalar_type() || on_nccl(t);  // NCCL reduces bf16/fp16 natively
      at::Tensor buf = native ? flat : flat.to(rt, false, /*copy=*/true);
      std::vector<at::Tensor> v{buf};
      stats_.all_reduce_bytes += 2 * (w - 1) * buf.nbytes() / w;
      std::function<void()> finish;
      if (!native || op == ReduceOp::Avg)
        finish = [buf, flat, native, w, op] {
          if (op == ReduceOp::Avg) buf.div_(w);
          if (!native) flat.copy_(buf);
        };
      return work("all_reduce", {pg_for(t).allreduce(v, o)}, finish, on_nccl(t));
    });
  }

  void broadcast(const at::Tensor& t, int root) override {
    detail::check_in_place(*this, "broadcast", t);
    if (root < 0 || root >= size_)
      throw CommError(fmt::format("{}: root {} out of range", detail::where(*this, "broadcast"), root));
    ++stats_.calls;
    if (t.numel() == 0) return;
    run("broadcast", [&]() -> std::unique_ptr<CommWork> {
      std::vector<at::Tensor> v{on_nccl(t) ? t.view({-1}) : movable(t)};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      if (rank_ == root) stats_.broadcast_bytes += t.nbytes();
      return work("broadcast", {pg_for(t).broadcast(v, o)}, nullptr, on_nccl(t));
    })->wait();
  }

  void barrier() override {
    ++stats_.calls;
    run("barrier", [&]() -> std::unique_ptr<CommWork> { return work("barrier", {gloo_->barrier()}, nullptr); })
        ->wait();
  }

  std::unique_ptr<Communicator> new_group(const std::vector<int>& ranks) override {
    for (size_t i = 0; i < ranks.size(); ++i)
      if (ranks[i] < 0 || ranks[i] >= size_ || (i > 0 && ranks[i] <= ranks[i - 1]))
        throw CommError(fmt::format("{}: ranks must be increasing and in [0, {}), got {}",
                                    detail::where(*this, "new_group"), size_, fmt::join(ranks, ",")));
    std::string name = fmt::format("{}/g{}", name_, groups_++);
    for (size_t i = 0; i < ranks.size(); ++i)
      if (ranks[i] == rank_)
        return std::make_unique<PgCommunicator>(shared_, name, static_cast<int>(i), static_cast<int>(ranks.size()));
    return nullptr;
  }

 private:
  std::unique_ptr<CommWork> work(const char* op, std::vector<c10::intrusive_ptr<c10d::Work>> works,
                                 std::function<void()> finish, bool device_side = false) {
    return std::make_unique<PgWork>(detail::where(*this, op), shared_->timeout, std::move(works),
                                    std::move(finish), device_side);
  }

  /// Whether collectives on `t` go through NCCL.
  bool on_nccl([[maybe_unused]] const at::Tensor& t) const {
#ifdef USE_C10D_NCCL
    return use_nccl(t);
#else
    return false;
#endif
  }

  /// Issues a collective; errors raised while issuing become CommErrors with context too.
  template <typename F>
  std::unique_ptr<CommWork> run(const char* op, F&& issue) {
    try {
      return issue();
    } catch (const CommError&) {
      throw;
    } catch (const std::exception& e) {
      throw CommError(fmt::format("{} failed: {}", detail::where(*this, op), cause_of(e)));
    }
  }

#ifdef USE_C10D_NCCL
  bool use_nccl(const at::Tensor& t) const { return nccl_ && t.is_cuda(); }
  c10d::ProcessGroupNCCL* nccl_or_null(const at::Tensor& t) const { return use_nccl(t) ? nccl_.get() : nullptr; }
#endif

  /// The process group for a tensor (NCCL for CUDA tensors when present). Both classes have the
  /// same collective methods but no common base across LibTorch versions, hence the small adapter.
  struct PgRef {
    c10d::ProcessGroupGloo* gloo = nullptr;
#ifdef USE_C10D_NCCL
    c10d::ProcessGroupNCCL* nccl = nullptr;
#endif
    c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& v, const c10d::AllreduceOptions& o) {
#ifdef USE_C10D_NCCL
      if (nccl) return nccl->allreduce(v, o);
#endif
      return gloo->allreduce(v, o);
    }
    c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& v, const c10d::BroadcastOptions& o) {
#ifdef USE_C10D_NCCL
      if (nccl) return nccl->broadcast(v, o);
#endif
      return gloo->broadcast(v, o);
    }
  };
  PgRef pg_for([[maybe_unused]] const at::Tensor& t) const {
    PgRef r;
    r.gloo = gloo_.get();
#ifdef USE_C10D_NCCL
    r.nccl = nccl_or_null(t);
#endif
    return r;
  }

  std::shared_ptr<Shared> shared_;
  std::string name_;
  int rank_, size_;
  int groups_ = 0;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#endif
};

std::shared_ptr<::gloo::transport::Device> make_device(const DistEnv& env) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (env.local_world_size == env.world_size)  // one node: loopback always works
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

std::unique_ptr<Communicator> make_process_group_communicator(const DistEnv& env, const ParallelConfig& cfg) {
  if (cfg.timeout_s <= 0)
    throw ConfigError("", "parallel.timeout_s", 0, fmt::format("must be > 0, got {}", cfg.timeout_s));
  auto shared = std::make_shared<Shared>();
  shared->timeout = Ms(static_cast<int64_t>(cfg.timeout_s * 1000));
  shared->store = rendezvous_store(env, shared->timeout);
  try {
    shared->device = make_device(env);
  } catch (const std::exception& e) {
    throw CommError(fmt::format("rank {}: cannot create a Gloo network device: {} (set GLOO_SOCKET_IFNAME)",
                                env.rank, cause_of(e)));
  }
#ifdef USE_C10D_NCCL
  shared->nccl = at::hasCUDA();
#endif
  auto comm = std::make_unique<PgCommunicator>(shared, "world", env.rank, env.world_size);
  log::debug("communicator ready: {} ({})", env.describe(), comm->backend());
  return comm;
}

}  // namespace openlm::parallel
