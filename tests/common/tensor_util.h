#pragma once
// Tensor comparison shared by tests.
#include <ATen/core/Tensor.h>

#include <cstring>

namespace openlm::test_util {

/// Same dtype, shape and bytes (bit-exact, NaN-safe).
inline bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  auto ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) == 0;
}

}  // namespace openlm::test_util
