// Backend-independent parts of the Communicator: argument checks, object all-gather, hybrid
// groups, the single-process communicator and the factory.
#include "openlm_cpp/parallel/comm.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cstring>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/parallel/comm_internal.h"

namespace openlm::parallel {
namespace detail {

std::string where(const Communicator& c, const char* op) {
  return fmt::format("{} on rank {} of {} ({}, {})", op, c.rank(), c.size(), c.name(), c.backend());
}

namespace {
std::string desc(const at::Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return fmt::format("{} tensor of {} elements on {}", c10::toString(t.scalar_type()), t.numel(),
                     t.device().str());
}
}  // namespace

void check_all_gather(const Communicator& c, const at::Tensor& out, const at::Tensor& in) {
  if (!out.defined() || !in.defined()) throw CommError(where(c, "all_gather_into") + ": undefined tensor");
  if (out.scalar_type() != in.scalar_type() || out.device() != in.device())
    throw CommError(where(c, "all_gather_into") + ": output " + desc(out) + " does not match input " + desc(in));
  if (out.numel() != in.numel() * c.size())
    throw CommError(fmt::format("{}: output has {} elements, expected {} (size {} x shard {})",
                                where(c, "all_gather_into"), out.numel(), in.numel() * c.size(), c.size(),
                                in.numel()));
  check_in_place(c, "all_gather_into", out);
}

void check_reduce_scatter(const Communicator& c, const at::Tensor& out, const at::Tensor& in, ReduceOp op) {
  if (!out.defined() || !in.defined()) throw CommError(where(c, "reduce_scatter") + ": undefined tensor");
  if (out.scalar_type() != in.scalar_type() || out.device() != in.device())
    throw CommError(where(c, "reduce_scatter") + ": output " + desc(out) + " does not match input " + desc(in));
  if (in.numel() != out.numel() * c.size())
    throw CommError(fmt::format("{}: input has {} elements, expected {} (size {} x shard {})",
                                where(c, "reduce_scatter"), in.numel(), out.numel() * c.size(), c.size(),
                                out.numel()));
  check_in_place(c, "reduce_scatter", out);
  check_reduce_dtype(c, "reduce_scatter", in, op);
}

void check_in_place(const Communicator& c, const char* op, const at::Tensor& t) {
  if (!t.defined()) throw CommError(where(c, op) + ": undefined tensor");
  if (!t.is_contiguous())
    throw CommError(where(c, op) + ": the tensor written in place must be contiguous (" + desc(t) + ")");
}

void check_reduce_dtype(const Communicator& c, const char* op, const at::Tensor& t, ReduceOp op_kind) {
  if (t.scalar_type() == at::kBool)
    throw CommError(where(c, op) + ": cannot reduce a bool tensor; use uint8");
  if (op_kind == ReduceOp::Avg && !at::isFloatingType(t.scalar_type()))
    throw CommError(where(c, op) + ": Avg needs a floating-point tensor, got " + desc(t));
}

}  // namespace detail

std::vector<std::string> Communicator::all_gather_bytes(const std::string& mine) {
  const int w = size();
  at::Tensor my_len = at::full({1}, static_cast<int64_t>(mine.size()), at::kLong);
  at::Tensor lens = at::empty({w}, at::kLong);
  all_gather_into(lens, my_len);
  int64_t max_len = lens.max().item<int64_t>();
  at::Tensor buf = at::zeros({std::max<int64_t>(max_len, 1)}, at::kByte);
  if (!mine.empty()) std::memcpy(buf.data_ptr(), mine.data(), mine.size());
  at::Tensor all = at::empty({buf.numel() * w}, at::kByte);
  all_gather_into(all, buf);
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(w));
  const char* base = static_cast<const char*>(all.data_ptr());
  const int64_t* len = lens.data_ptr<int64_t>();
  for (int i = 0; i < w; ++i) out.emplace_back(base + i * buf.numel(), static_cast<size_t>(len[i]));
  return out;
}

double Communicator::all_reduce_scalar(double v, ReduceOp op) {
  at::Tensor t = at::full({1}, v, at::kDouble);
  all_reduce(t, op);
  return t.item<double>();
}

HybridGroups make_hybrid_groups(Communicator& world, int group_size) {
  const int w = world.size();
  if (group_size < 1 || w % group_size != 0)
    throw ConfigError("", "parallel.shard_group_size", 0,
                      fmt::format("{} does not divide the world size {}", group_size, w));
  HybridGroups g;
  // Every rank creates its shard group first, then its replicate group: the members of each group
  // reach its creation together, so the full-mesh connects cannot wait on each other in a cycle.
  for (int first = 0; first < w; first += group_size) {
    std::vector<int> ranks;
    for (int r = first; r < first + group_size; ++r) ranks.push_back(r);
    if (auto c = world.new_group(ranks)) g.shard = std::move(c);
  }
  for (int j = 0; j < group_size; ++j) {
    std::vector<int> ranks;
    for (int r = j; r < w; r += group_size) ranks.push_back(r);
    if (auto c = world.new_group(ranks)) g.replicate = std::move(c);
  }
  return g;
}

namespace {

/// World size 1: every collective is a copy or nothing.
class SingleCommunicator : public Communicator {
 public:
  explicit SingleCommunicator(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  std::string name() const override { return name_; }

  std::unique_ptr<CommWork> all_gather_into_async(const at::Tensor& out, const at::Tensor& in) override {
    detail::check_all_gather(*this, out, in);
    if (!out.is_same(in)) out.view({-1}).copy_(in.reshape({-1}));
    ++stats_.calls;
    return std::make_unique<detail::DoneWork>();
  }
  std::unique_ptr<CommWork> reduce_scatter_async(const at::Tensor& out, const at::Tensor& in,
                                                 ReduceOp op) override {
    detail::check_reduce_scatter(*this, out, in, op);
    if (!out.is_same(in)) out.view({-1}).copy_(in.reshape({-1}));
    ++stats_.calls;
    return std::make_unique<detail::DoneWork>();
  }
  std::unique_ptr<CommWork> all_reduce_async(const at::Tensor& t, ReduceOp op) override {
    detail::check_in_place(*this, "all_reduce", t);
    detail::check_reduce_dtype(*this, "all_reduce", t, op);
    ++stats_.calls;
    return std::make_unique<detail::DoneWork>();
  }
  void broadcast(const at::Tensor& t, int root) override {
    detail::check_in_place(*this, "broadcast", t);
    if (root != 0) throw CommError(fmt::format("{}: root {} out of range", detail::where(*this, "broadcast"), root));
    ++stats_.calls;
  }
  void barrier() override {}
  std::unique_ptr<Communicator> new_group(const std::vector<int>& ranks) override {
    if (ranks != std::vector<int>{0})
      throw CommError(detail::where(*this, "new_group") + ": a single-process group has only rank 0");
    return std::make_unique<SingleCommunicator>(fmt::format("{}/g{}", name_, groups_++));
  }

 private:
  std::string name_;
  int groups_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>("world");
}

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const ParallelConfig& cfg) {
  if (env.world_size == 1) return make_single_communicator();
  return make_process_group_communicator(env, cfg);
}

}  // namespace openlm::parallel
