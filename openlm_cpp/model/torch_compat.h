#pragma once
/// The one place that knows LibTorch versions (Debian's 1.13 on CPU, 2.x with CUDA on GPU).
/// c10d API differences live in parallel/comm*.cpp instead.
#include <ATen/ATen.h>
#include <torch/version.h>

#define OPENLM_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace openlm::compat {

/// True when at::scaled_dot_product_attention exists (LibTorch >= 2.0; flash kernels on CUDA).
constexpr bool kHasSdpa = OPENLM_TORCH_AT_LEAST(2, 0);

/// Causal (or unmasked) attention over [B, H, T, hd] tensors with scale 1/sqrt(hd). `mask` is an
/// optional boolean [Tq, Tk] "may attend" mask; when undefined, `causal` selects top-left causal.
inline at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& mask, bool causal) {
#if OPENLM_TORCH_AT_LEAST(2, 0)
  // An undefined tensor inside the optional would count as "a mask given": pass nullopt instead.
  c10::optional<at::Tensor> m = mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt;
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, causal && !mask.defined());
#else
  // Plain attention: scores in the input dtype, softmax in fp32 for stability.
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).to(at::kFloat).mul_(scale);
  at::Tensor allowed = mask;
  if (!allowed.defined() && causal)
    allowed = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril_();
  if (allowed.defined()) scores.masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  return at::matmul(at::softmax(scores, -1).to(v.scalar_type()), v);
#endif
}

/// Releases a tensor's storage memory while keeping the storage object (views into it stay valid
/// objects and regain their data after realloc_storage). Used for just-in-time parameter gathers.
inline void free_storage(const at::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  s->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  s->set_nbytes(0);
}
/// Gives a freed storage `nbytes` of fresh (uninitialised) memory from its allocator.
inline void realloc_storage(const at::Tensor& t, size_t nbytes) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  s->set_data_ptr_noswap(s->allocator()->allocate(nbytes));
  s->set_nbytes(nbytes);
}

}  // namespace openlm::compat
