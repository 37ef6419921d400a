// FSDP all-gather prefetch (parallel/fsdp.h): while a unit computes, the next unit's all-gather is
// already issued (forward: the next block; backward: the previous one), never more than one ahead,
// and every issued gather is waited for. Checked by a communicator that records when each
// all-gather is issued and waited for (and what is in flight when gradients are reduced).
#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/fsdp.h"

using namespace openlm;
using namespace openlm::parallel;

namespace {

/// Wraps a single-rank communicator; each all-gather becomes "issued" until its wait().
class RecordingComm : public Communicator {
 public:
  struct Log {
    int issued = 0, waited = 0, max_in_flight = 0;
    std::vector<int> in_flight_at_reduce;  // all-gathers pending when a gradient reduce starts
  };
  RecordingComm() : inner_(make_single_communicator()) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "recording"; }
  std::string name() const override { return "world"; }
  std::unique_ptr<CommWork> all_gather_into_async(const at::Tensor& out, const at::Tensor& in) override {
    struct W : CommWork {
      std::unique_ptr<CommWork> inner;
      RecordingComm* c;
      bool done = false;
      void wait() override {
        if (done) return;
        done = true;
        inner->wait();
        ++c->log.waited;
      }
    };
    auto w = std::make_unique<W>();
    w->inner = inner_->all_gather_into_async(out, in);
    w->c = this;
    ++log.issued;
    log.max_in_flight = std::max(log.max_in_flight, log.issued - log.waited);
    return w;
  }
  std::unique_ptr<CommWork> reduce_scatter_async(const at::Tensor& o, const at::Tensor& i, ReduceOp op) override {
    log.in_flight_at_reduce.push_back(log.issued - log.waited);
    return inner_->reduce_scatter_async(o, i, op);
  }
  std::unique_ptr<CommWork> all_reduce_async(const at::Tensor& t, ReduceOp op) override {
    return inner_->all_reduce_async(t, op);
  }
  void broadcast(const at::Tensor& t, int root) override { inner_->broadcast(t, root); }
  void barrier() override {}
  std::unique_ptr<Communicator> new_group(const std::vector<int>& r) override { return inner_->new_group(r); }
  Log log;

 private:
  std::unique_ptr<Communicator> inner_;
};

ModelConfig tiny() {
  ModelConfig c;
  c.name = "prefetch";
  c.dim = 32;
  c.n_layers = 4;
  c.n_heads = 4;
  c.seq_len = 16;
  c.vocab_size = 64;
  return c;
}

}  // namespace

TEST(FsdpPrefetch, ForwardIssuesTheNextUnitsGatherBeforeTheCurrentUnitComputes) {
  RecordingComm comm;
  Transformer model(tiny(), 1);
  ParallelConfig pc;
  pc.strategy = "full_shard";
  ShardedModel sm(model, comm, pc, at::kFloat);
  sm.before_forward(0);  // the root is ready, block 0's gather is already on its way
  EXPECT_EQ(comm.log.issued, 2);
  EXPECT_EQ(comm.log.waited, 1);
  for (int u = 1; u <= 4; ++u) {
    sm.before_forward(u);  // waits for unit u, issues u+1 (none after the last block)
    EXPECT_EQ(comm.log.waited, u + 1);
    EXPECT_EQ(comm.log.issued, u < 4 ? u + 2 : 5) << "unit " << u;
    EXPECT_LE(comm.log.issued - comm.log.waited, 1) << "more than one unit ahead";
  }
}

TEST(FsdpPrefetch, BackwardOverlapsTheGatherOfThePreviousBlockAndChangesNoNumber) {
  RecordingComm comm;
  Transformer model(tiny(), 1), ref(tiny(), 1);
  ParallelConfig pc;
  pc.strategy = "full_shard";
  ShardedModel sm(model, comm, pc, at::kFloat);
  at::Tensor tokens = at::randint(0, 64, {2, 17}, at::kLong);
  at::Tensor in = tokens.narrow(1, 0, 16), tgt = tokens.narrow(1, 1, 16);

  sm.begin_micro_batch(true);
  at::Tensor loss = at::cross_entropy_loss(model.forward(in).reshape({-1, 64}), tgt.reshape({-1}));
  EXPECT_EQ(comm.log.issued, 5);  // root + 4 blocks, each once
  loss.backward();
  sm.finish_backward();
  EXPECT_EQ(comm.log.issued, 9);  // blocks 3..0 again in backward; the root stayed gathered
  EXPECT_EQ(comm.log.issued, comm.log.waited) << "an issued all-gather was never waited for";
  // When block b's gradients are reduced, block b-1's gather is already in flight (b = 3, 2, 1).
  int overlapped = 0;
  for (int n : comm.log.in_flight_at_reduce) overlapped += n == 1;
  EXPECT_GE(overlapped, 3) << "backward did not prefetch the previous block";

  // Prefetch changes no number: loss and gradients equal the unsharded model's.
  at::Tensor rl = at::cross_entropy_loss(ref.forward(in).reshape({-1, 64}), tgt.reshape({-1}));
  rl.backward();
  EXPECT_NEAR(loss.item<double>(), rl.item<double>(), 1e-6);
  auto grads = sm.full_from_shards(sm.grad_shards(), "");
  std::map<std::string, at::Tensor> want;
  for (auto& [n, p] : ref.named_parameters()) want[n] = p.grad();
  ASSERT_EQ(grads.size(), want.size());
  for (auto& [n, g] : grads) EXPECT_TRUE(at::allclose(g, want.at(n), 1e-5, 1e-6)) << n;
}
