#pragma once
// Shared by the Communicator implementations in parallel/comm*.cpp only (not a public header).
#include <ATen/core/Tensor.h>

#include <string>

#include "openlm_cpp/parallel/comm.h"

namespace openlm::parallel::detail {

/// "all_gather_into on rank 1 of 4 (world)": the context every error message starts with.
std::string where(const Communicator& c, const char* op);

/// Shape/dtype checks shared by all backends; throw CommError with `where` context.
void check_all_gather(const Communicator& c, const at::Tensor& out_flat, const at::Tensor& in_shard);
void check_reduce_scatter(const Communicator& c, const at::Tensor& out_shard, const at::Tensor& in_flat,
                          ReduceOp op);
void check_in_place(const Communicator& c, const char* op, const at::Tensor& t);
void check_reduce_dtype(const Communicator& c, const char* op, const at::Tensor& t, ReduceOp op_kind);

/// A CommWork that is already complete.
class DoneWork : public CommWork {
 public:
  void wait() override {}
};

}  // namespace openlm::parallel::detail
