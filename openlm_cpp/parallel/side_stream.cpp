#include "openlm_cpp/parallel/side_stream.h"

#ifdef OPENLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#endif

namespace openlm::parallel {

#ifdef OPENLM_WITH_CUDA
struct SideStream::Impl {
  c10::cuda::CUDAStream stream;
};
struct SideStream::Scope::Impl {
  std::optional<c10::cuda::CUDAStreamGuard> guard;
};

SideStream::SideStream(const c10::Device& device) {
  if (device.is_cuda()) impl_ = std::make_unique<Impl>(Impl{c10::cuda::getStreamFromPool(false, device.index())});
}

SideStream::Scope::Scope(SideStream& s) : impl_(std::make_unique<Impl>()) {
  if (!s.impl_) return;
  const c10::cuda::CUDAStream& side = s.impl_->stream;
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(side.device_index()));
  ready.block(side);  // the side stream waits for what the compute stream queued so far
  impl_->guard.emplace(side);
}
#else
struct SideStream::Impl {};
struct SideStream::Scope::Impl {};
SideStream::SideStream(const c10::Device&) {}
SideStream::Scope::Scope(SideStream&) {}
#endif

SideStream::~SideStream() = default;
SideStream::Scope::~Scope() = default;
bool SideStream::active() const { return impl_ != nullptr; }

}  // namespace openlm::parallel
