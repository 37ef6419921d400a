#pragma once
/// TensorBoard event-file writer (scalars), torch-free.
///
/// An event file is a sequence of TFRecords:
///   [u64 LE length][u32 LE masked_crc32c(length bytes)][data][u32 LE masked_crc32c(data)]
/// where each `data` is a serialized tensorflow.Event protobuf, encoded here by hand:
///   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
///   Summary { repeated Value value = 1; }
///   Value   { string tag = 1; float simple_value = 2; }
/// The first record is Event{wall_time, file_version: "brain.Event:2"}; each scalar call appends
/// one Event{wall_time, step, summary{value...}} and hands it to the kernel right away (one write(2)
/// per event, no user-space buffering), so TensorBoard sees progress and a crash loses nothing
/// already logged.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openlm::tb {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven. `crc` chains calls.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
/// TFRecord's masked CRC: rotate right by 15 and add 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

/// One TFRecord frame around `payload`.
std::string frame_record(std::string_view payload);

/// Serialized Event protobufs (exposed for tests and other sinks).
std::string encode_file_version_event(double wall_time);
std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values);

/// Appends scalar summaries to `<log_dir>/events.out.tfevents.<unix time>.<hostname>`.
/// Thread-safe. Throws IoError naming the file when it cannot be created or written.
class TbWriter {
 public:
  /// Creates `log_dir` if needed and a new event file in it (never appends to an existing one:
  /// if the name is taken, ".<pid>.<n>" is added; TensorBoard reads any "*tfevents*" file).
  explicit TbWriter(const std::string& log_dir);
  ~TbWriter();
  TbWriter(const TbWriter&) = delete;
  TbWriter& operator=(const TbWriter&) = delete;

  /// One scalar at `step`. wall_time < 0 means now.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  /// Several scalars in one event (one record, one write).
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                   double wall_time = -1);
  /// Flushes to stable storage (fsync); writes are already visible to readers without it.
  void flush();
  void close();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  int fd_ = -1;
  std::mutex mu_;
};

}  // namespace openlm::tb
