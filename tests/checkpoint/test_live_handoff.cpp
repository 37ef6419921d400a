// Async checkpoints on CPU write the live state through a LiveHandOff (checkpoint/live_handoff.h):
// once the owner has called release(), changing the live tensors must not change what is written,
// and the writer reads nothing before release() or start().
#include "openlm_cpp/checkpoint/live_handoff.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>

#include "../common/test_util.h"

using namespace openlm::checkpoint;

namespace {

/// Passes reads on to a file's gate and stops the writer at entry `at` until the test lets it go
/// on: before it takes the entry (`after_take` false) or while it holds it (true).
struct PausingGate : TensorGate {
  PausingGate(TensorGate& g, std::size_t i, bool after) : inner(g), at(i), after_take(after) {}
  at::Tensor take(std::size_t i) override {
    if (i == at && !after_take) pause();
    at::Tensor t = inner.take(i);
    if (i == at && after_take) pause();
    return t;
  }
  void give_back(std::size_t i) override { inner.give_back(i); }
  void pause() {
    paused.set_value();
    go.get_future().wait();
  }
  TensorGate& inner;
  std::size_t at;
  bool after_take;
  std::promise<void> paused, go;
};

struct State {
  at::Tensor flat = at::arange(0, 3000, at::kFloat);  // views of one storage, as the trainer's slices
  NamedTensors tensors() const {
    return {{"a", flat.narrow(0, 0, 1000)}, {"b", flat.narrow(0, 1000, 1500).view({30, 50})},
            {"c", flat.narrow(0, 2500, 500)}};
  }
};

}  // namespace

TEST(LiveHandOff, WhatIsWrittenIsTheStateAtReleaseEvenIfItChangesAfterwards) {
  const std::string dir = openlm::test_util::fresh_dir("handoff", "release");
  State s;
  const at::Tensor before = s.flat.clone();
  LiveHandOff h({{"f.safetensors", s.tensors()}});
  h.start();
  PausingGate gate(h.gate(0), 1, /*after_take=*/false);  // "a" written, "b" not begun
  auto paused = gate.paused.get_future();
  std::thread writer([&] { save_safetensors_hashed(dir + "/f.safetensors", h.files()[0].tensors, {}, &gate); });
  paused.wait();
  const int64_t copied = h.release();
  EXPECT_EQ(copied, (1500 + 500) * 4) << "the entries not yet begun are copied, the written one is not";
  s.flat.fill_(-1.0f);  // the optimizer update
  gate.go.set_value();
  writer.join();
  auto back = load_safetensors(dir + "/f.safetensors");
  EXPECT_TRUE(at::equal(back.at("a"), before.narrow(0, 0, 1000)));
  EXPECT_TRUE(at::equal(back.at("b"), before.narrow(0, 1000, 1500).view({30, 50})));
  EXPECT_TRUE(at::equal(back.at("c"), before.narrow(0, 2500, 500)));
  EXPECT_EQ(h.release(), 0) << "a second release copies nothing";

  // The next hand-over copies into the same buffers (no fresh allocation to fault in).
  LiveHandOff::Copies spare = h.take_copies();
  ASSERT_EQ(spare.size(), 1u);
  ASSERT_TRUE(spare[0][1].defined() && spare[0][2].defined());
  EXPECT_FALSE(spare[0][0].defined()) << "entry a was read live, never copied";
  const void* b_buffer = spare[0][1].data_ptr();
  s.flat.copy_(before);
  LiveHandOff next({{"f2.safetensors", s.tensors()}}, std::move(spare));
  EXPECT_EQ(next.release(), 3000 * 4);
  s.flat.fill_(-2.0f);
  const std::string dir2 = openlm::test_util::fresh_dir("handoff", "spare");
  save_safetensors_hashed(dir2 + "/f2.safetensors", next.files()[0].tensors, {}, &next.gate(0));
  auto again = load_safetensors(dir2 + "/f2.safetensors");
  EXPECT_TRUE(at::equal(again.at("b"), before.narrow(0, 1000, 1500).view({30, 50})));
  EXPECT_TRUE(at::equal(again.at("a"), before.narrow(0, 0, 1000)));
  EXPECT_EQ(next.take_copies()[0][1].data_ptr(), b_buffer) << "the spare buffer was not reused";
}

TEST(LiveHandOff, ReleaseWaitsForTheTensorBeingReadAndCopiesNothingOnceAllIsRead) {
  const std::string dir = openlm::test_util::fresh_dir("handoff", "reading");
  State s;
  const at::Tensor before = s.flat.clone();
  LiveHandOff h({{"g.safetensors", s.tensors()}});
  h.start();
  PausingGate gate(h.gate(0), 2, /*after_take=*/true);  // holds entry "c" while release() is called
  auto reading = gate.paused.get_future();
  std::thread writer([&] { save_safetensors_hashed(dir + "/g.safetensors", h.files()[0].tensors, {}, &gate); });
  reading.wait();
  auto released = std::async(std::launch::async, [&] { return h.release(); });
  EXPECT_EQ(released.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "release() returned while the writer was still reading a live tensor";
  gate.go.set_value();
  EXPECT_EQ(released.get(), 0) << "every entry was begun: nothing to copy";
  writer.join();
  s.flat.fill_(-1.0f);
  auto back = load_safetensors(dir + "/g.safetensors");
  EXPECT_TRUE(at::equal(back.at("c"), before.narrow(0, 2500, 500)));
}

TEST(LiveHandOff, TheWriterWaitsForTheHandOverThenWritesTheCopies) {
  const std::string dir = openlm::test_util::fresh_dir("handoff", "wait");
  State s;
  const at::Tensor before = s.flat.clone();
  LiveHandOff h({{"w.safetensors", s.tensors()}}, LiveHandOff::buffers_for({{"w.safetensors", s.tensors()}}));
  auto writer = std::async(std::launch::async,
                           [&] { return save_safetensors_hashed(dir + "/w.safetensors", h.files()[0].tensors, {}, &h.gate(0)); });
  EXPECT_EQ(writer.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "the writer finished before the state was handed over";
  EXPECT_EQ(h.release(), 3000 * 4) << "nothing was read before the hand-over: everything is copied";
  s.flat.fill_(-1.0f);
  writer.get();
  auto back = load_safetensors(dir + "/w.safetensors");
  EXPECT_TRUE(at::equal(back.at("a"), before.narrow(0, 0, 1000)));
  EXPECT_TRUE(at::equal(back.at("b"), before.narrow(0, 1000, 1500).view({30, 50})));
  EXPECT_TRUE(at::equal(back.at("c"), before.narrow(0, 2500, 500)));
}

TEST(LiveHandOff, AnAbandonedHandOffStopsTheWaitingWriterWithAnError) {
  const std::string dir = openlm::test_util::fresh_dir("handoff", "abandon");
  State s;
  LiveHandOff h({{"x.safetensors", s.tensors()}});
  auto writer = std::async(std::launch::async,
                           [&] { return save_safetensors_hashed(dir + "/x.safetensors", h.files()[0].tensors, {}, &h.gate(0)); });
  h.abandon();
  EXPECT_THROW(writer.get(), std::exception);
}
