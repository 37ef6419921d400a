// libFuzzer target: the restricted torch.save pickle reader (openlm_cpp/checkpoint/pt_pickle.cpp).
// Any input must either parse or throw openlm::Error; never crash, hang or leak (values live in an
// arena, so memo cycles are fine).
#include <cstddef>
#include <cstdint>

#include "openlm_cpp/checkpoint/pt_pickle.h"
#include "openlm_cpp/core/error.h"

namespace pk = openlm::checkpoint::pickle;

namespace {
// Bounded walk, as a consumer would do (cycles and shared subtrees possible: cap the visits).
void walk(const pk::Value* v, int depth, size_t& budget) {
  if (!v || depth > 32 || budget == 0) return;
  --budget;
  for (auto* x : v->items) walk(x, depth + 1, budget);
  for (auto& kv : v->dict) {
    walk(kv.first, depth + 1, budget);
    walk(kv.second, depth + 1, budget);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto doc = pk::parse(data, size, "fuzz");
    size_t budget = 100000;
    walk(doc->root, 0, budget);
    if (const pk::Value* sd = doc->root->get("state_dict"))
      for (auto& kv : sd->dict)
        if (kv.second->is(pk::Value::Kind::Tensor)) (void)kv.second->tensor.size.size();
  } catch (const openlm::Error&) {
  }
  return 0;
}
