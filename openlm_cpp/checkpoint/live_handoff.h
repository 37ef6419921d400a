#pragma once
/// Writing checkpoint files from live training state in the background (async checkpoints on CPU).
///
/// The writer reads the live tensors, with no copy of the whole state on the training thread, through
/// one TensorGate per file. Before the owner changes the state (its next optimizer update) it calls
/// release(). Every tensor the writer has not begun is copied, and the writer then reads the copy;
/// the tensor being read is waited for. Copying is far cheaper than writing and hashing, so the
/// owner waits only for copying what is left, and for nothing once the writer has finished.
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
  /// After the writer has finished: the copies release() made, to be passed on as `spare`.
  Copies take_copies();

 private:
  class Gate;
  at::Tensor take(std::size_t f, std::size_t i);
  void give_back();

  std::vector<FileTensors> files_;
  std::vector<std::unique_ptr<Gate>> gates_;
  Copies copies_;  // filled by release() for entries not yet taken
  Copies spare_;
  std::vector<std::vector<bool>> taken_;
  bool reading_ = false, released_ = false;
  std::mutex m_;
  std::condition_variable cv_;
};

}  // namespace openlm::checkpoint
