// StateReader: slices of tensors saved by "ranks" with one layout are read back for any other
// layout (arbitrary element ranges spanning several files), whole tensors reassemble exactly, and
// holes, missing or mis-shaped tensors and bad layouts are errors naming the checkpoint and tensor.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "../common/test_util.h"
#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/core/error.h"

using namespace openlm;
using namespace openlm::checkpoint;

namespace {

struct Saved {
  std::string dir;
  nlohmann::json meta;
  TensorMap whole;
};

/// Tensors a [5, 7] and b [13] flattened and cut at `cuts` into contiguous per-"rank" ranges, as
/// FSDP's padded flat shards cut them (a cut may fall inside a tensor); each rank's slices go to
/// its own file, and the checkpoint is committed the way the trainer does it.
Saved save_cut(const std::string& name, const std::vector<int64_t>& cuts) {
  Saved s;
  s.whole["a"] = torch::randn({5, 7});
  s.whole["b"] = torch::arange(13, torch::kFloat) * 0.5;
  const std::vector<std::pair<std::string, int64_t>> order = {{"a", 35}, {"b", 13}};  // flat: a then b
  std::string run = openlm::test_util::fresh_dir("state_shards", name);
  begin_checkpoint(run, 1);
  nlohmann::json meta = {{"shards", {{"model", nlohmann::json::array()}}}, {"files", nlohmann::json::object()}};
  for (std::size_t r = 0; r + 1 < cuts.size(); ++r) {
    std::vector<StateSlice> mine;
    int64_t offset = 0;
    for (auto& [n, numel] : order) {
      int64_t lo = std::max(cuts[r], offset), hi = std::min(cuts[r + 1], offset + numel);
      if (lo < hi) {
        auto t = s.whole[n];
        std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
        mine.push_back({n, shape, lo - offset, hi - offset, t.reshape({-1}).narrow(0, lo - offset, hi - lo)});
      }
      offset += numel;
    }
    std::string file = "model-shard0000" + std::to_string(r) + ".safetensors";
    meta["shards"]["model"].push_back(slice_layout(file, static_cast<int>(r), mine));
    meta["files"][file] = write_checkpoint_file(run, 1, file, slice_tensors(mine));
  }
  s.dir = commit_checkpoint(run, 1, meta, 1, 0);
  s.meta = verify_checkpoint(s.dir);
  return s;
}

}  // namespace

TEST(StateShards, AnyRangeReadsBackAcrossFiles) {
  auto s = save_cut("ranges", {0, 10, 11, 30, 48});  // 4 "ranks"; cuts inside a and at a/b's border
  StateReader reader(s.dir, s.meta, "model");
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(reader.shape("a"), (std::vector<int64_t>{5, 7}));
  for (auto& [n, t] : s.whole) EXPECT_TRUE(torch::equal(reader.full(n), t)) << n;
  // Ranges another world size would need: inside one file, across three files, single elements.
  at::Tensor flat = s.whole["a"].reshape({-1});
  for (auto [b, e] : std::vector<std::pair<int64_t, int64_t>>{{0, 35}, {3, 29}, {10, 11}, {9, 12}, {34, 35}, {0, 1}}) {
    at::Tensor out = torch::empty({e - b}, torch::kDouble);  // another dtype: values are converted
    reader.read("a", b, e, out);
    EXPECT_TRUE(torch::equal(out, flat.narrow(0, b, e - b).to(torch::kDouble))) << b << ".." << e;
  }
  // read_into fills views of live state, here the second half of a fresh tensor.
  at::Tensor live = torch::zeros({13});
  reader.read_into({{"b", {13}, 6, 13, live.narrow(0, 6, 7)}});
  EXPECT_TRUE(torch::equal(live.narrow(0, 6, 7), s.whole["b"].narrow(0, 6, 7)));
  EXPECT_EQ(live.narrow(0, 0, 6).abs().sum().item<float>(), 0.f);
  EXPECT_TRUE(torch::equal(load_model_weights(s.dir).at("a"), s.whole["a"]));
}

TEST(StateShards, HolesAndMismatchesAreErrorsNamingTheTensor) {
  auto s = save_cut("holes", {0, 20, 48});
  // Drop the second rank's entry from the layout: elements of a from 20 on and all of b are gone.
  nlohmann::json meta = s.meta;
  meta["shards"]["model"].erase(1);
  StateReader reader(s.dir, meta, "model");
  at::Tensor out = torch::empty({35});
  try {
    reader.read("a", 0, 35, out);
    FAIL() << "no error for a hole";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("[20, 35) of tensor 'a'"), std::string::npos) << e.what();
  }
  try {
    reader.check({{"b", {13}, 0, 13, {}}, {"a", {7, 5}, 0, 35, {}}, {"c", {1}, 0, 1, {}}});
    FAIL() << "no error for missing and mis-shaped tensors";
  } catch (const DataError& e) {
    std::string m = e.what();
    for (auto* part : {"'b' missing", "'a' has shape [5,7], the model [7,5]", "'c' missing", s.dir.c_str()})
      EXPECT_NE(m.find(part), std::string::npos) << part << " in " << m;
  }
}

TEST(StateShards, BadLayoutsAreRefused) {
  auto s = save_cut("bad", {0, 48});
  auto expect_refused = [&](nlohmann::json meta, const std::string& words) {
    try {
      StateReader r(s.dir, meta, "model");
      FAIL() << "accepted: " << meta["shards"].dump();
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  nlohmann::json m = s.meta;
  m["shards"]["model"][0]["tensors"]["a"]["range"] = {0, 36};  // past the tensor's 35 elements
  expect_refused(m, "range outside");
  m = s.meta;
  m["shards"]["model"][0]["tensors"]["a"]["range"] = {1, 35};  // 34 elements claimed, 35 stored
  expect_refused(m, "holds 35 elements");
  m = s.meta;
  m["shards"]["model"][0]["file"] = "../elsewhere.safetensors";
  expect_refused(m, "outside the checkpoint");
  m = s.meta;
  m["shards"]["model"][0]["tensors"]["zzz"] = {{"shape", {1}}, {"range", {0, 1}}};
  expect_refused(m, "lacks tensor 'zzz'");
  m = s.meta;
  m["shards"].erase("model");
  expect_refused(m, "lacks a 'model' list");
}
