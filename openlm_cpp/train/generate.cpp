#include "openlm_cpp/train/generate.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/model/transformer.h"

namespace openlm {
namespace {

int64_t pick(const at::Tensor& logits_row, const SampleOptions& o, at::Generator& gen) {
  at::Tensor l = logits_row.to(at::kFloat).cpu();
  if (o.temperature <= 0) return l.argmax().item<int64_t>();
  l = l / o.temperature;
  if (o.top_k > 0 && o.top_k < l.size(0)) {
    at::Tensor kth = std::get<0>(l.topk(o.top_k)).index({o.top_k - 1});
    l = l.masked_fill(l < kth, -std::numeric_limits<float>::infinity());
  }
  if (o.top_p < 1.0) {
    auto [sorted, idx] = l.sort(-1, /*descending=*/true);
    at::Tensor cum = sorted.softmax(-1).cumsum(-1);
    at::Tensor drop = (cum - sorted.softmax(-1)) > o.top_p;  // keep the smallest prefix reaching top_p
    sorted.masked_fill_(drop, -std::numeric_limits<float>::infinity());
    l = at::full_like(l, -std::numeric_limits<float>::infinity()).scatter(0, idx, sorted);
  }
  return at::multinomial(l.softmax(-1), 1, false, gen).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const SampleOptions& o) {
  if (prompt.empty()) throw Error("generate: empty prompt");
  at::NoGradGuard no_grad;
  model.train(false);
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  const int64_t ctx = model.config().seq_len;
  const auto dev = model.device();
  std::vector<int64_t> ids = prompt;
  if (static_cast<int64_t>(ids.size()) > ctx) ids.erase(ids.begin(), ids.end() - ctx);
  KVCache cache;
  at::Tensor logits;
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    bool full = static_cast<int64_t>(ids.size()) >= ctx;
    if (o.use_kv_cache && !full) {
      // First call feeds the whole prompt, later calls only the newest token.
      std::vector<int64_t> feed(ids.begin() + cache.length, ids.end());
      at::Tensor t = at::tensor(feed, at::kLong).view({1, -1}).to(dev);
      logits = model.forward(t, &cache);
    } else {
      std::vector<int64_t> window(full ? ids.end() - ctx + 1 : ids.begin(), ids.end());
      at::Tensor t = at::tensor(window, at::kLong).view({1, -1}).to(dev);
      logits = model.forward(t);
    }
    int64_t next = pick(logits[0][logits.size(1) - 1], o, gen);
    ids.push_back(next);
    if (next == o.stop_token) break;
  }
  return ids;
}

}  // namespace openlm
