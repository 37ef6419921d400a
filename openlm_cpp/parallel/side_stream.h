#pragma once
/// A second CUDA stream for parameter all-gathers, so that gathering the next FSDP unit (the cast
/// of its fp32 master shard and the collective's launch) overlaps the current unit's compute.
/// On CPU tensors, and in LibTorch builds without CUDA, every call is a no-op: Gloo's collectives
/// already run on their own threads.
#include <ATen/core/Tensor.h>

#include <memory>

namespace openlm::parallel {

class SideStream {
 public:
  /// A stream on `device` when it is a CUDA device (and the build has CUDA), else nothing.
  explicit SideStream(const c10::Device& device);
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

  /// While a Scope lives, the side stream is the current stream; on entry it waits (an event, no
  /// host sync) for the work already queued on the stream that was current, so it sees up-to-date
  /// master shards.
  class Scope {
   public:
    explicit Scope(SideStream& s);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  bool active() const;  ///< true when a CUDA side stream exists

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace openlm::parallel
