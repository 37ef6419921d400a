#pragma once
/// The one place that knows LibTorch versions (Debian's 1.13 on CPU, the PyPI wheel's 2.x with CUDA
/// and NCCL). Every layer may include it (it lives in core/ but needs LibTorch: include it only from
/// targets that link openlm_torch). c10d API differences live in parallel/comm_pg.cpp instead.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#define OPENLM_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

/// Dtype enumerators that exist only in newer LibTorch releases (use with #if).
#define OPENLM_HAS_FLOAT8 OPENLM_TORCH_AT_LEAST(2, 1)
#define OPENLM_HAS_UINT_WIDE OPENLM_TORCH_AT_LEAST(2, 3)

namespace openlm::compat {

/// Tensor dtypes that only newer LibTorch releases have (checkpoint/tensor_file.cpp maps them to
/// safetensors dtypes; older releases refuse such files by name).
constexpr bool kHasFloat8 = OPENLM_HAS_FLOAT8;    ///< F8_E4M3 / F8_E5M2
constexpr bool kHasWideUInt = OPENLM_HAS_UINT_WIDE;  ///< U16 / U32 / U64

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
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t Tq = q.size(-2), Tk = k.size(-2);
  constexpr int64_t kBlock = 128;  // query rows per block
  if (!mask.defined() && causal && Tq == Tk && Tq > kBlock) {
    // Causal self-attention in query blocks: rows [s, s+n) attend keys [0, s+n), so at most
    // [B, H, 128, T] fp32 scores exist at a time instead of [B, H, T, T].
    std::vector<at::Tensor> outs;
    for (int64_t s = 0; s < Tq; s += kBlock) {
      const int64_t n = std::min(kBlock, Tq - s), e = s + n;
      at::Tensor sc = at::matmul(q.narrow(-2, s, n), k.narrow(-2, 0, e).transpose(-2, -1)).to(at::kFloat).mul_(scale);
      at::Tensor allowed = at::ones({n, e}, q.options().dtype(at::kBool)).tril_(s);  // key j <= s + i
      sc.masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
      outs.push_back(at::matmul(at::softmax(sc, -1).to(v.scalar_type()), v.narrow(-2, 0, e)));  // [B, H, n, hd]
    }
    return at::cat(outs, -2);
  }
  // Plain attention: scores in the input dtype, softmax in fp32 for stability.
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

/// Whether ATen's fused AdamW kernel (`_fused_adamw_`, one pass over param, grad and both moments)
/// exists for tensors on `device`: CUDA since 2.0, CPU since 2.4.
inline bool has_fused_adamw(const at::Device& device) {
  return device.is_cuda() ? OPENLM_TORCH_AT_LEAST(2, 0) : OPENLM_TORCH_AT_LEAST(2, 4);
}

/// ATen's fused AdamW over same-device, same-dtype lists: decoupled weight decay `wd`, then the
/// bias-corrected update with the step count held in `steps` (one fp32 scalar tensor per param,
/// read, not incremented). Same arithmetic as optim/adamw.cpp's unfused loop (bit-identical on CPU).
inline void fused_adamw_([[maybe_unused]] const std::vector<at::Tensor>& params,
                         [[maybe_unused]] const std::vector<at::Tensor>& grads,
                         [[maybe_unused]] const std::vector<at::Tensor>& exp_avgs,
                         [[maybe_unused]] const std::vector<at::Tensor>& exp_avg_sqs,
                         [[maybe_unused]] const std::vector<at::Tensor>& steps, [[maybe_unused]] double lr,
                         [[maybe_unused]] double beta1, [[maybe_unused]] double beta2,
                         [[maybe_unused]] double wd, [[maybe_unused]] double eps) {
#if OPENLM_TORCH_AT_LEAST(2, 0)
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, wd, eps,
                    /*amsgrad=*/false, /*maximize=*/false);
#else
  TORCH_CHECK(false, "fused AdamW needs LibTorch >= 2.0 (this is " TORCH_VERSION ")");
#endif
}

}  // namespace openlm::compat
