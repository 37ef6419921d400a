#include "openlm_cpp/checkpoint/native_checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace stdfs = std::filesystem;

namespace openlm::checkpoint {
namespace {

int64_t step_of(const std::string& name) {
  if (name.rfind("step_", 0) != 0) return -1;
  try {
    std::size_t pos = 0;
    int64_t s = std::stoll(name.substr(5), &pos);
    return pos == name.size() - 5 ? s : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

/// Complete checkpoint directories, newest first.
std::vector<std::pair<int64_t, std::string>> list_steps(const std::string& ckpt_root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (auto& e : stdfs::directory_iterator(ckpt_root, ec)) {
    int64_t s = step_of(e.path().filename().string());
    if (s >= 0 && e.is_directory()) out.emplace_back(s, e.path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

std::string hex64(uint64_t h) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

std::string file_xxh64(const std::string& path) {
  // O_NONBLOCK: a FIFO put in place of a file must not block the open (verify refuses it anyway).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw_errno("cannot open", path);
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw IoError("cannot hash '" + path + "': not a regular file");
  }
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::vector<char> buf(1 << 22);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      XXH64_freeState(st);
      ::close(fd);
      throw_errno("cannot read", path);
    }
    if (n == 0) break;
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  const uint64_t digest = XXH64_digest(st);
  XXH64_freeState(st);
  return hex64(digest);
}

std::string partial_checkpoint_dir(const std::string& run_dir, int64_t step) {
  return (stdfs::path(run_dir) / "checkpoints" / ("step_" + std::to_string(step) + ".partial")).string();
}

void begin_checkpoint(const std::string& run_dir, int64_t step) {
  stdfs::path root = stdfs::path(run_dir) / "checkpoints";
  stdfs::create_directories(root);
  // One save is in flight per run at a time: any .partial (or older .tmp-*) directory is a leftover
  // of an attempt that crashed before its rename, never a checkpoint.
  std::error_code ec;
  for (auto& e : stdfs::directory_iterator(root, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && (n.find(".partial") != std::string::npos || n.find(".tmp-") != std::string::npos))
      stdfs::remove_all(e.path(), ec);
  }
  stdfs::create_directories(partial_checkpoint_dir(run_dir, step));
}

std::string write_checkpoint_file(const std::string& run_dir, int64_t step, const std::string& file,
                                  const NamedTensors& tensors, const Metadata& extra, TensorGate* gate) {
  std::string p = (stdfs::path(partial_checkpoint_dir(run_dir, step)) / file).string();
  return hex64(save_safetensors_hashed(p, tensors, extra, gate));  // atomic + fsync'd
}

std::string commit_checkpoint(const std::string& run_dir, int64_t step, nlohmann::json meta,
                              int64_t keep_last, int64_t keep_every, const std::string& protect) {
  stdfs::path root = stdfs::path(run_dir) / "checkpoints";
  std::string name = "step_" + std::to_string(step);
  stdfs::path final_dir = root / name;
  stdfs::path tmp = partial_checkpoint_dir(run_dir, step);
  meta["step"] = step;
  if (!meta.contains("files")) meta["files"] = nlohmann::json::object();
  openlm::fs::write_file_atomic((tmp / "metadata.json").string(), meta.dump(2));
  openlm::fs::fsync_dir(tmp.string());
  // A checkpoint of the same step from an earlier (crashed) attempt is replaced.
  if (stdfs::exists(final_dir)) stdfs::remove_all(final_dir);
  std::error_code ec;
  stdfs::rename(tmp, final_dir, ec);
  if (ec) throw IoError("cannot rename '" + tmp.string() + "' to '" + final_dir.string() + "': " + ec.message());
  openlm::fs::fsync_dir(root.string());
  openlm::fs::write_file_atomic((root / "latest").string(), name + "\n");

  // Retention: never delete the one just written, nor the one this run resumed from (`protect`):
  // until the run has been resumed from a newer one, it is the last checkpoint known to load.
  // Checkpoints that failed verification were renamed aside at resume (set_aside_checkpoint), so
  // they neither count towards keep_last nor get deleted.
  auto steps = list_steps(root.string());
  int64_t kept = 0;
  for (auto& [s, dir] : steps) {
    bool keep = kept < keep_last || s == step || (keep_every > 0 && s % keep_every == 0);
    if (kept < keep_last) ++kept;
    if (!keep && !protect.empty()) {
      std::error_code eq;
      keep = stdfs::equivalent(dir, protect, eq) && !eq;
    }
    if (!keep) stdfs::remove_all(dir, ec);
  }
  return final_dir.string();
}

std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointFiles& files,
                            int64_t keep_last, int64_t keep_every, const std::string& protect) {
  begin_checkpoint(run_dir, step);
  nlohmann::json meta = files.metadata;
  meta["files"] = nlohmann::json::object();
  for (auto& [file, tensors] : files.tensor_files)
    meta["files"][file] = write_checkpoint_file(run_dir, step, file, tensors);
  return commit_checkpoint(run_dir, step, std::move(meta), keep_last, keep_every, protect);
}

std::string checkpoint_member(const std::string& dir, const std::string& name, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return DataError("checkpoint '" + dir + "': " + what + " names '" + name + "', " + why);
  };
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw bad("which is not a file inside the checkpoint directory");
  const stdfs::path p = stdfs::path(dir) / name;
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return p.string();  // absent: the caller reports it
  if (S_ISLNK(st.st_mode)) throw bad("a symlink (a checkpoint holds only regular files)");
  if (!S_ISREG(st.st_mode)) throw bad("which is not a regular file");
  return p.string();
}

void check_counters(const std::string& dir, const nlohmann::json& meta) {
  // Generous bounds: 10^12 steps, 10^18 tokens; anything beyond is a doctored or corrupt file.
  constexpr int64_t kMaxSteps = 1'000'000'000'000LL, kMaxTokens = 1'000'000'000'000'000'000LL;
  auto check = [&](const nlohmann::json& obj, const char* key, const std::string& name, int64_t lo, int64_t hi,
                   bool required) -> int64_t {
    if (!obj.is_object() || !obj.contains(key)) {
      if (required) throw DataError("checkpoint '" + dir + "': metadata.json lacks '" + name + "'");
      return lo;
    }
    const auto& v = obj[key];
    const bool in_range = v.is_number_unsigned()  ? v.get<uint64_t>() >= static_cast<uint64_t>(lo) &&
                                                        v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                          : v.is_number_integer() ? v.get<int64_t>() >= lo && v.get<int64_t>() <= hi
                                                  : false;
    if (!in_range)
      throw DataError("checkpoint '" + dir + "': metadata.json '" + name + "' is " + v.dump() +
                      ", expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v.get<int64_t>();
  };
  const int64_t step = check(meta, "step", "step", 0, kMaxSteps, true);
  check(meta, "optimizer_steps", "optimizer_steps", 0, kMaxSteps, false);
  check(meta, "tokens_seen", "tokens_seen", 0, kMaxTokens, false);
  check(meta, "world_size", "world_size", 1, 1 << 20, false);
  if (meta.contains("lr_schedule")) {
    check(meta["lr_schedule"], "step", "lr_schedule.step", 0, kMaxSteps, false);
    check(meta["lr_schedule"], "total_steps", "lr_schedule.total_steps", 0, kMaxSteps, false);
  }
  const int64_t named = step_of(stdfs::path(dir).lexically_normal().filename().string());
  if (named >= 0 && named != step)
    throw DataError("checkpoint '" + dir + "': metadata.json 'step' is " + std::to_string(step) +
                    " but the directory is step_" + std::to_string(named));
}

std::string set_aside_checkpoint(const std::string& dir) {
  std::string base = stdfs::path(dir).lexically_normal().string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  for (int n = 1;; ++n) {
    const std::string to = base + ".corrupt-" + std::to_string(n);
    std::error_code ec;
    if (stdfs::exists(stdfs::symlink_status(to, ec))) continue;
    if (::rename(base.c_str(), to.c_str()) != 0) throw_errno("cannot move aside the failed checkpoint", base);
    openlm::fs::fsync_dir(openlm::fs::parent_dir(to));
    return to;
  }
}

nlohmann::json verify_checkpoint(const std::string& dir, int part, int parts) {
  stdfs::path meta_path = checkpoint_member(dir, "metadata.json", "the checkpoint layout");
  if (!stdfs::exists(meta_path)) throw DataError("checkpoint '" + dir + "' is incomplete: no metadata.json");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(openlm::fs::read_file(meta_path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw DataError("checkpoint '" + dir + "': metadata.json is not valid JSON: " + e.what());
  }
  if (!meta.is_object() || !meta.contains("files") || !meta["files"].is_object() || !meta.contains("step"))
    throw DataError("checkpoint '" + dir + "': metadata.json lacks 'files' or 'step'");
  check_counters(dir, meta);
  // Every name is checked by every rank (cheap); only the hashing is shared out.
  for (auto& [file, sum] : meta["files"].items()) checkpoint_member(dir, file, "metadata.json 'files'");
  if (meta.contains("shards") && meta["shards"].is_object())
    for (auto& [kind, list] : meta["shards"].items())
      if (list.is_array())
        for (auto& f : list)
          if (f.is_object() && f.contains("file") && f["file"].is_string()) {
            const std::string name = f["file"].get<std::string>();
            checkpoint_member(dir, name, "metadata.json 'shards." + kind + "'");
            if (!meta["files"].contains(name))
              throw DataError("checkpoint '" + dir + "': metadata.json 'shards." + kind + "' names '" + name +
                              "', which 'files' does not list (it would be read unverified)");
          }
  int index = -1;
  for (auto& [file, sum] : meta["files"].items()) {
    if (++index % parts != part) continue;
    stdfs::path p = stdfs::path(dir) / file;
    if (!stdfs::exists(p)) throw DataError("checkpoint '" + dir + "' is incomplete: missing " + file);
    if (!sum.is_string()) throw DataError("checkpoint '" + dir + "': metadata.json: checksum of " + file + " is not a string");
    std::string got = file_xxh64(p.string());
    if (got != sum.get<std::string>())
      throw DataError("checkpoint '" + dir + "': checksum mismatch in " + file + " (expected " +
                      sum.get<std::string>() + ", got " + got + ")");
  }
  return meta;
}

std::vector<std::string> checkpoint_candidates(const std::string& run_dir, const std::string& spec) {
  if (spec != "latest") return {spec};
  std::vector<std::string> out;
  for (auto& [s, dir] : list_steps((stdfs::path(run_dir) / "checkpoints").string())) out.push_back(dir);
  return out;
}

std::string resolve_checkpoint(const std::string& run_dir, const std::string& spec) {
  if (spec != "latest") {
    verify_checkpoint(spec);
    return spec;
  }
  // The newest verified step directory wins; `latest` normally names it, but a crash between the
  // rename and the pointer update leaves a newer complete one, which is just as good.
  for (auto& dir : checkpoint_candidates(run_dir, spec)) {
    try {
      verify_checkpoint(dir);
      return dir;
    } catch (const DataError& e) {
      log::warn("skipping checkpoint: {}", e.what());
    }
  }
  return "";
}

}  // namespace openlm::checkpoint
