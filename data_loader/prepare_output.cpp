// Input enumeration, the output directory's lifecycle and the shard writers of prepare-data.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data_loader/data_tools.h"
#include "data_loader/prepare_detail.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"

namespace openlm::data::detail {
namespace stdfs = std::filesystem;
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

std::string shard_name(int64_t i) {
  char b[32];
  std::snprintf(b, sizeof b, "shard_%08lld", static_cast<long long>(i));
  return b;
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) throw_errno("cannot move '" + from + "' to", to);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) throw_errno("cannot write", path);
}

}  // namespace

std::vector<InputFile> list_source_files(const std::string& path) {
  std::error_code ec;
  auto st = stdfs::status(path, ec);
  if (ec || !stdfs::exists(st)) throw ConfigError("--input", "", 0, "'" + path + "' does not exist");
  std::vector<InputFile> files;
  auto add = [&](const stdfs::path& p) {
    InputFile f;
    f.path = p.string();
    f.kind = input_kind(f.path);
    f.size = stdfs::file_size(p, ec);
    if (ec) throw_errno("cannot stat input", f.path);
    files.push_back(std::move(f));
  };
  if (!stdfs::is_directory(st)) {
    for (const char* ext : {".bz2", ".xz", ".lz4", ".lzma", ".zip", ".br", ".tar"})
      if (path.size() > std::strlen(ext) && path.compare(path.size() - std::strlen(ext), std::string::npos, ext) == 0)
        throw ConfigError("--input", "", 0,
                          "'" + path + "': " + ext + " files are not read (inputs are text or JSONL, plain, .gz or .zst)");
    add(path);
    return files;
  }
  for (auto it = stdfs::recursive_directory_iterator(path, stdfs::directory_options::follow_directory_symlink, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec)) {
      if (!name.empty() && name[0] == '.') it.disable_recursion_pending();  // .git, .partial-*, ...
      continue;
    }
    if (it->is_regular_file(ec) && is_input_file_name(name)) add(it->path());
  }
  if (ec) throw_errno("cannot list input folder", path);
  // byte order of the paths: the same on every file system and locale
  std::sort(files.begin(), files.end(), [](const InputFile& a, const InputFile& b) { return a.path < b.path; });
  if (files.empty())
    throw ConfigError("--input", "", 0,
                      "folder '" + path + "' holds no input files (*.txt, *.text, *.jsonl, *.json, *.ndjson, "
                      "optionally .gz/.zst/.zstd)");
  return files;
}

void refuse_output_inside(const std::string& input, const std::string& output_dir) {
  std::error_code ec;
  if (!stdfs::is_directory(input, ec)) return;
  const std::string in = stdfs::weakly_canonical(input, ec).string() + "/";
  const std::string out = stdfs::weakly_canonical(output_dir, ec).string() + "/";
  if (!ec && starts_with(out, in))
    throw ConfigError("--output", "", 0,
                      "'" + output_dir + "' is inside the input folder '" + input +
                      "': a later run would read this output as input; write it elsewhere");
}

bool is_output_file_name(const std::string& name) {
  if (name == "manifest.jsonl" || name == "prepare_data.json") return true;
  if (!starts_with(name, "shard_") || name.size() < 14) return false;
  for (size_t i = 6; i < 14; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  std::string ext = name.substr(14);
  return ext == ".olmtok" || ext == ".tar" || ext == ".olmtok.tmp" || ext == ".tar.tmp";
}

OutputDir::OutputDir(std::string dir) : dir_(std::move(dir)) {
  if (dir_.empty()) throw ConfigError("--output", "", 0, "no output directory given");
  make_dirs(dir_);
  std::error_code ec;
  std::vector<stdfs::path> stale;
  for (auto& e : stdfs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename().string();
    if (starts_with(name, ".partial-") && e.is_directory()) {
      stale.push_back(e.path());
    } else if (!is_output_file_name(name)) {
      throw ConfigError("--output", "", 0,
                        "'" + dir_ + "' holds '" + name + "', which prepare-data did not write; give an empty or new "
                        "directory (an earlier prepare-data output there is replaced)");
    }
  }
  if (ec) throw_errno("cannot list output directory", dir_);
  // Leftovers of an interrupted run: nothing in them is reused, the run restarts from the inputs.
  for (auto& p : stale) stdfs::remove_all(p, ec);
  partial_ = join_path(dir_, ".partial-" + std::to_string(::getpid()));
  stdfs::remove_all(partial_, ec);
  make_dirs(tmp());
}

OutputDir::~OutputDir() {
  if (committed_) return;
  std::error_code ec;
  stdfs::remove_all(partial_, ec);
}

void OutputDir::commit(const std::vector<ManifestEntry>& entries, const std::string& stats_json) {
  std::error_code ec;
  stdfs::remove_all(tmp(), ec);
  write_manifest(join_path(partial_, "manifest.jsonl"), entries);
  write_text(join_path(partial_, "prepare_data.json"), stats_json);
  // From here until the last rename the directory has no manifest.jsonl: a reader never sees a
  // mix of old and new shards, and a rerun after a crash here starts over.
  const std::string manifest = join_path(dir_, "manifest.jsonl");
  if (std::remove(manifest.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove", manifest);
  for (auto& e : stdfs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename().string();
    if (is_output_file_name(name) && !stdfs::remove(e.path(), ec))
      throw IoError("cannot remove old output '" + e.path().string() + "': " + ec.message());
  }
  std::vector<std::string> names;
  for (auto& e : stdfs::directory_iterator(partial_, ec)) names.push_back(e.path().filename().string());
  if (ec) throw_errno("cannot list", partial_);
  std::sort(names.begin(), names.end());
  for (auto& n : names)
    if (n != "manifest.jsonl") rename_or_throw(join_path(partial_, n), join_path(dir_, n));
  rename_or_throw(join_path(partial_, "manifest.jsonl"), manifest);
  committed_ = true;
  stdfs::remove_all(partial_, ec);
}

ShardSink::ShardSink(std::string dir, ShardFormat format, int64_t per_shard, int64_t seq_tokens, int64_t vocab_size,
                     std::string tokenizer_id, int threads)
    : dir_(std::move(dir)),
      tokenizer_id_(std::move(tokenizer_id)),
      format_(format),
      per_shard_(per_shard),
      L_(seq_tokens),
      dtype_(native_dtype_bytes(vocab_size)),
      threads_(std::max(1, threads)),
      ids_(static_cast<size_t>(seq_tokens)) {}

ShardSink::~ShardSink() = default;

void ShardSink::open_shard() {
  const std::string name = shard_name(static_cast<int64_t>(entries_.size()));
  if (format_ == ShardFormat::Native)
    native_ = std::make_unique<NativeShardWriter>(join_path(dir_, name + kNativeExt), dtype_, L_, tokenizer_id_);
  else
    tar_ = std::make_unique<TarWriter>(join_path(dir_, name + ".tar"));
  in_shard_ = 0;
}

void ShardSink::close_shard() {
  if (tar_) flush_tar();
  if (native_) native_->finish();
  if (tar_) tar_->finish();
  native_.reset();
  tar_.reset();
  ManifestEntry e;
  e.shard = shard_name(static_cast<int64_t>(entries_.size()));
  e.num_sequences = in_shard_;
  entries_.push_back(e);
}

void ShardSink::flush_tar() {
  const size_t L = static_cast<size_t>(L_), n = pending_.size() / L;
  if (n == 0) return;
  // the member layout of `openlm data convert --format openlm-tar` (json.dumps text, gzip); the
  // members are independent, so they compress in parallel and are written in order
  std::vector<std::vector<uint8_t>> gz(n);
  auto work = [&](size_t t) {
    std::vector<int64_t> ids(L);
    for (size_t i = t; i < n; i += static_cast<size_t>(threads_)) {
      std::copy(pending_.begin() + static_cast<std::ptrdiff_t>(i * L),
                pending_.begin() + static_cast<std::ptrdiff_t>((i + 1) * L), ids.begin());
      std::string js = format_json_int_list(ids.data(), ids.size());
      gz[i] = gzip_compress(js.data(), js.size());
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads_ && static_cast<size_t>(t) < n; ++t) pool.emplace_back(work, static_cast<size_t>(t));
  work(0);
  for (auto& th : pool) th.join();
  const int64_t first = in_shard_ - static_cast<int64_t>(n);  // pending members end at in_shard_
  for (size_t i = 0; i < n; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "_%08lld.json.gz", static_cast<long long>(first + static_cast<int64_t>(i)));
    tar_->add(shard_name(static_cast<int64_t>(entries_.size())) + key, gz[i].data(), gz[i].size());
  }
  pending_.clear();
}

void ShardSink::add(const uint32_t* tokens) {
  if (!native_ && !tar_) open_shard();
  ++in_shard_;
  if (native_) {
    std::copy(tokens, tokens + L_, ids_.begin());
    native_->append(ids_.data(), ids_.size());
  } else {
    pending_.insert(pending_.end(), tokens, tokens + L_);
    if (pending_.size() >= static_cast<size_t>(L_) * 64 * static_cast<size_t>(threads_)) flush_tar();
  }
  if (in_shard_ == per_shard_) close_shard();
}

std::vector<ManifestEntry> ShardSink::finish() {
  if (native_ || tar_) close_shard();
  return entries_;
}

}  // namespace openlm::data::detail
