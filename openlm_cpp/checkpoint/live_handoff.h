#pragma once
/// Writing checkpoint files from live training state in the background (async checkpoints on CPU).
///
/// The writer reads through one TensorGate per file and begins when the owner says the state may be
/// read: release(), before the owner changes the state (its next optimizer update), copies every
/// tensor the writer has not begun (into spare buffers kept from one checkpoint to the next) and
/// waits for the tensor being read; start() lets the writer read the live tensors themselves while
/// the owner leaves them alone (e.g. while it waits for the writer). Until then the writer waits:
/// reading the live state during the owner's next forward and backward competes with them for the
/// cores and the memory bandwidth, for longer than one copy at the hand-off costs.
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/tensor_file.h"

namespace openlm::checkpoint {

/// One file of a checkpoint: its name and the tensors it holds, in order.
struct FileTensors {
  std::string name;
  NamedTensors tensors;
};

class LiveHandOff {
 public:
  /// The copies of an earlier hand-off (`spare`, from take_copies()) are reused as the copy
  /// targets where shape and dtype match. A fresh buffer costs a page fault per 4 KiB on first touch:
  /// about as much as the copy itself.
  using Copies = std::vector<std::vector<at::Tensor>>;
  explicit LiveHandOff(std::vector<FileTensors> files, Copies spare = {});
  /// Spares for hand-offs of `files`' tensors, allocated and touched now. A run makes them once at
  /// its start: the first checkpoint then copies into memory the kernel has already mapped (on the
  /// 2-vCPU VM of docs/CHECKPOINT_FORMAT.md the first hand-off of a 755 MB state took 0.7-1.0 s with
  /// fresh buffers, against 0.02-0.05 s into touched ones).
  static Copies buffers_for(const std::vector<FileTensors>& files);
  ~LiveHandOff();
  LiveHandOff(const LiveHandOff&) = delete;
  LiveHandOff& operator=(const LiveHandOff&) = delete;

  /// The files, as given (never changed: shapes and dtypes stay valid for the writer).
  const std::vector<FileTensors>& files() const { return files_; }
  /// The gate the writer of file `f` reads its tensors through (lives as long as this object).
  TensorGate& gate(std::size_t f);

  /// Owner side: after this returns the writer no longer reads the live tensors. Returns the bytes
  /// copied for it. Idempotent.
  int64_t release();
  /// Owner side: the writer may read the live tensors, which stay unchanged until release().
  void start();
  /// Owner side: the save is given up (e.g. the run is unwinding): the writer's next take() throws (its future holds the error).
  void abandon();
  /// After the writer has finished: the copies release() made, to be passed on as `spare`.
  Copies take_copies();

 private:
  class Gate;
  at::Tensor take(std::size_t f, std::size_t i);
  void give_back();
  void signal(bool& flag);  // sets flag under the lock and wakes the writer

  std::vector<FileTensors> files_;
  std::vector<std::unique_ptr<Gate>> gates_;
  Copies copies_;  // filled by release() for entries not yet taken
  Copies spare_;
  std::vector<std::vector<bool>> taken_;
  bool reading_ = false, released_ = false, started_ = false, abandoned_ = false;
  std::mutex m_;
  std::condition_variable cv_;
};

}  // namespace openlm::checkpoint
