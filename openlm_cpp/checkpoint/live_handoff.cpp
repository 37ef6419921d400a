#include "openlm_cpp/checkpoint/live_handoff.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <utility>

namespace openlm::checkpoint {

class LiveHandOff::Gate : public TensorGate {
 public:
  Gate(LiveHandOff& h, std::size_t f) : hand_(h), file_(f) {}
  at::Tensor take(std::size_t i) override { return hand_.take(file_, i); }
  void give_back(std::size_t) override { hand_.give_back(); }

 private:
  LiveHandOff& hand_;
  std::size_t file_;
};

LiveHandOff::LiveHandOff(std::vector<FileTensors> files, Copies spare)
    : files_(std::move(files)), spare_(std::move(spare)) {
  for (std::size_t f = 0; f < files_.size(); ++f) {
    gates_.push_back(std::make_unique<Gate>(*this, f));
    copies_.emplace_back(files_[f].tensors.size());
    taken_.emplace_back(files_[f].tensors.size(), false);
  }
}

LiveHandOff::~LiveHandOff() = default;

LiveHandOff::Copies LiveHandOff::buffers_for(const std::vector<FileTensors>& files) {
  Copies out;
  for (const FileTensors& f : files) {
    out.emplace_back();
    for (const auto& [name, t] : f.tensors)
      out.back().push_back(at::zeros(t.sizes(), t.options()));  // zeroing touches every page
  }
  return out;
}

TensorGate& LiveHandOff::gate(std::size_t f) { return *gates_.at(f); }

at::Tensor LiveHandOff::take(std::size_t f, std::size_t i) {
  std::unique_lock<std::mutex> lk(m_);
  cv_.wait(lk, [this] { return released_ || started_ || abandoned_; });
  if (abandoned_) throw std::runtime_error("checkpoint abandoned before its state was handed over");
  taken_.at(f).at(i) = true;
  reading_ = true;
  return copies_[f][i].defined() ? copies_[f][i] : files_[f].tensors[i].second;
}

void LiveHandOff::start() { signal(started_); }

void LiveHandOff::abandon() { signal(abandoned_); }

void LiveHandOff::signal(bool& flag) {
  {
    std::lock_guard<std::mutex> lk(m_);
    flag = true;
  }
  cv_.notify_all();
}

void LiveHandOff::give_back() {
  {
    std::lock_guard<std::mutex> lk(m_);
    reading_ = false;
  }
  cv_.notify_all();
}

int64_t LiveHandOff::release() {
  std::unique_lock<std::mutex> lk(m_);
  if (released_) return 0;
  released_ = true;
  int64_t bytes = 0;
  for (std::size_t f = 0; f < files_.size(); ++f)
    for (std::size_t i = 0; i < files_[f].tensors.size(); ++i)
      if (!taken_[f][i]) {
        const at::Tensor& t = files_[f].tensors[i].second;
        at::Tensor target = f < spare_.size() && i < spare_[f].size() ? spare_[f][i] : at::Tensor();
        if (target.defined() && target.sizes() == t.sizes() && target.scalar_type() == t.scalar_type())
          copies_[f][i] = target.copy_(t);
        else
          copies_[f][i] = t.clone(at::MemoryFormat::Contiguous);
        bytes += static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
      }
  spare_.clear();
  cv_.notify_all();  // a writer waiting to begin reads the copies
  cv_.wait(lk, [this] { return !reading_; });
  return bytes;
}

LiveHandOff::Copies LiveHandOff::take_copies() {
  std::lock_guard<std::mutex> lk(m_);
  return std::exchange(released_ ? copies_ : spare_, {});  // never released: the spares are unused
}

}  // namespace openlm::checkpoint
