#include "data_loader/instruction_source.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::data {
namespace {

namespace stdfs = std::filesystem;

constexpr int kStateVersion = 1;
constexpr const char* kKind = "instructions";

/// splitmix64: a small portable generator, so the order does not depend on the standard library.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string resolve(const std::string& p, const std::string& base_dir) {
  if (p.empty() || stdfs::path(p).is_absolute() || stdfs::exists(p) || base_dir.empty()) return p;
  stdfs::path beside = stdfs::path(base_dir) / p;
  return stdfs::exists(beside) ? beside.string() : p;
}

class InstructionSource final : public BatchSource {
 public:
  InstructionSource(const LoaderOptions& o, const TextEncoder& encode, int32_t eos) : opt_(o) {
    const auto& c = o.cfg;
    check_batch_layout(o);
    auto bad = [](const std::string& key, const std::string& what) { return ConfigError("", key, 0, what); };
    if (c.instructions.empty()) throw bad("data.instructions", "no instruction file given");
    if (c.prompt_field.empty() || c.response_field.empty())
      throw bad("data.prompt_field", "the prompt and response field names must not be empty");
    if (!encode) throw bad("tokenizer.path", "no tokenizer to encode the instruction records");
    if (eos < 0) throw bad("tokenizer.path", "the tokenizer has no end-of-text id (needed to end each response)");
    if (o.vocab_size > 0 && eos >= o.vocab_size)
      throw bad("model.vocab_size", "the tokenizer's end-of-text id " + std::to_string(eos) +
                                        " is outside the model's vocab_size " + std::to_string(o.vocab_size));
    eos_ = eos;
    len_ = o.seq_len + 1;
    per_rank_ = o.global_batch_size / o.world_size;
    accum_ = per_rank_ / o.micro_batch_size;
    stop_at_end_ = c.on_epoch_end == "stop";
    path_ = resolve(c.instructions, o.base_dir);
    load(encode);
  }

  bool next(at::Tensor& tokens) override {
    at::Tensor mask;
    return next(tokens, mask);
  }

  bool next(at::Tensor& tokens, at::Tensor& loss_mask) override {
    const int64_t G = opt_.global_batch_size, M = opt_.micro_batch_size;
    if (stop_at_end_ && (batch_ + 1) * G > num_records()) return false;
    at::Tensor t = at::empty({M, len_}, at::kLong);
    at::Tensor m = at::empty({M, len_}, at::kBool);
    int64_t* tp = t.data_ptr<int64_t>();
    bool* mp = m.data_ptr<bool>();
    const int64_t base = batch_ * G + opt_.rank * per_rank_ + micro_ * M;
    for (int64_t j = 0; j < M; ++j) {
      const int64_t rec = record_at(base + j);
      std::memcpy(tp + j * len_, tokens_.data() + rec * len_, sizeof(int64_t) * len_);
      for (int64_t k = 0; k < len_; ++k) mp[j * len_ + k] = mask_[rec * len_ + k] != 0;
    }
    if (++micro_ == accum_) {
      micro_ = 0;
      ++batch_;
    }
    if (at::hasCUDA()) {
      t = t.pin_memory();
      m = m.pin_memory();
    }
    tokens = std::move(t);
    loss_mask = std::move(m);
    return true;
  }

  nlohmann::json state() const override {
    return {{"version", kStateVersion},
            {"kind", kKind},
            {"seed", opt_.seed},
            {"num_records", num_records()},
            {"global_batch", batch_},
            {"global_batch_size", opt_.global_batch_size},
            {"position", batch_ * opt_.global_batch_size},
            {"epoch", batch_ * opt_.global_batch_size / num_records()},
            {"micro_done", micro_},
            {"layout", {{"world_size", opt_.world_size}, {"micro_batch_size", opt_.micro_batch_size}}},
            {"instructions", path_}};
  }

  void restore(const nlohmann::json& j) override {
    auto fail = [](const std::string& what) { return DataError("cannot restore instruction data state: " + what); };
    try {
      if (!j.contains("kind") || j.at("kind").get<std::string>() != kKind)
        throw fail("the checkpoint's data state is not from instruction data (was the data section changed?)");
      if (j.at("version").get<int>() != kStateVersion) throw fail("unknown state version");
      if (j.at("seed").get<uint64_t>() != opt_.seed)
        throw fail("it was saved with seed " + j.at("seed").dump() + ", this run has seed " + std::to_string(opt_.seed));
      if (j.at("global_batch_size").get<int64_t>() != opt_.global_batch_size)
        throw fail("global_batch_size changed from " + j.at("global_batch_size").dump());
      if (j.at("num_records").get<int64_t>() != num_records())
        throw fail("'" + path_ + "' now has " + std::to_string(num_records()) + " usable records, the state was saved with " +
                   j.at("num_records").dump());
      const int64_t g = j.at("global_batch").get<int64_t>();
      const int64_t micro_done = j.at("micro_done").get<int64_t>();
      if (g < 0) throw fail("inconsistent position");
      if (micro_done != 0) {
        const auto& lay = j.at("layout");
        if (lay.at("world_size").get<int>() != opt_.world_size ||
            lay.at("micro_batch_size").get<int64_t>() != opt_.micro_batch_size)
          throw fail("it was saved in the middle of a global batch; resume with the same world size and micro batch");
        if (micro_done < 0 || micro_done >= accum_) throw fail("micro_done out of range");
      }
      batch_ = g;
      micro_ = micro_done;
    } catch (const nlohmann::json::exception& e) {
      throw fail(std::string("malformed state: ") + e.what());
    }
  }

  double wait_seconds() const override { return 0.0; }

  nlohmann::json stats() const override {
    return {{"records", num_records()},
            {"lines", lines_read_},
            {"skipped_no_response", skipped_no_response_},
            {"truncated", truncated_},
            {"global_batches", batch_},
            {"sequences", batch_ * opt_.global_batch_size},
            {"wait_seconds", 0.0}};
  }

 private:
  int64_t num_records() const { return static_cast<int64_t>(tokens_.size()) / len_; }

  [[noreturn]] void bad_line(int64_t line, const std::string& what) const {
    throw DataError("instruction data '" + path_ + "' line " + std::to_string(line) + ": " + what);
  }

  void load(const TextEncoder& encode) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw DataError("instruction data '" + path_ + "': cannot open (data.instructions)");
    const std::string& pf = opt_.cfg.prompt_field;
    const std::string& rf = opt_.cfg.response_field;
    std::string line;
    int64_t lineno = 0;
    std::vector<int64_t> seq;
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      ++lines_read_;
      nlohmann::json rec;
      try {
        rec = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        bad_line(lineno, std::string("bad JSON: ") + e.what());
      }
      if (!rec.is_object()) bad_line(lineno, "expected a JSON object, got " + std::string(rec.type_name()));
      auto field = [&](const std::string& name) -> std::string {
        auto it = rec.find(name);
        if (it == rec.end()) bad_line(lineno, "missing field '" + name + "'");
        if (!it->is_string())
          bad_line(lineno, "field '" + name + "' is not a string (got " + std::string(it->type_name()) + ")");
        return it->get<std::string>();
      };
      const std::string prompt = field(pf), response = field(rf);
      auto check = [&](const std::vector<int32_t>& ids) {
        for (int32_t id : ids)
          if (id < 0 || (opt_.vocab_size > 0 && id >= opt_.vocab_size))
            bad_line(lineno, "token id " + std::to_string(id) + " is outside the model's vocab_size " +
                                 std::to_string(opt_.vocab_size) + " (tokenizer and model do not match)");
      };
      const auto p = encode(prompt);
      const auto r = encode(response);
      check(p);
      check(r);
      // prompt ++ response ++ [eos]; the targets are positions 1..len-1, so a record counts only if
      // one of those holds a response token or the closing eos.
      const int64_t np = static_cast<int64_t>(p.size());
      const int64_t full = np + static_cast<int64_t>(r.size()) + 1;
      const int64_t kept = std::min(full, len_);
      if (std::max<int64_t>(np, 1) >= kept) {
        ++skipped_no_response_;
        continue;
      }
      if (full > len_) ++truncated_;
      seq.clear();
      seq.insert(seq.end(), p.begin(), p.end());
      seq.insert(seq.end(), r.begin(), r.end());
      seq.push_back(eos_);
      seq.resize(len_, eos_);  // truncate on the right, or pad with eos
      tokens_.insert(tokens_.end(), seq.begin(), seq.end());
      for (int64_t k = 0; k < len_; ++k) mask_.push_back(k >= np && k < kept ? 1 : 0);
    }
    if (num_records() == 0)
      throw DataError("instruction data '" + path_ + "': no usable record (" + std::to_string(lines_read_) +
                      " records read, " + std::to_string(skipped_no_response_) +
                      " without a response token within seq_len " + std::to_string(opt_.seq_len) + ")");
    log::info("instruction data {}: {} records ({} truncated to seq_len {}, {} skipped: no response token left)",
              path_, num_records(), truncated_, opt_.seq_len, skipped_no_response_);
  }

  /// Record at stream position p: epoch p / N, shuffled with seed + epoch.
  int64_t record_at(int64_t p) {
    const int64_t n = num_records();
    const int64_t epoch = p / n;
    if (epoch != perm_epoch_) {
      perm_.resize(n);
      std::iota(perm_.begin(), perm_.end(), int64_t{0});
      uint64_t s = opt_.seed + static_cast<uint64_t>(epoch);
      for (int64_t i = n - 1; i > 0; --i)
        std::swap(perm_[i], perm_[static_cast<int64_t>(splitmix(s) % static_cast<uint64_t>(i + 1))]);
      perm_epoch_ = epoch;
    }
    return perm_[p % n];
  }

  LoaderOptions opt_;
  std::string path_;
  int32_t eos_ = 0;
  int64_t len_ = 0, per_rank_ = 0, accum_ = 0;
  bool stop_at_end_ = false;
  std::vector<int64_t> tokens_;  // num_records x len_
  std::vector<uint8_t> mask_;    // num_records x len_
  int64_t lines_read_ = 0, skipped_no_response_ = 0, truncated_ = 0;
  int64_t batch_ = 0, micro_ = 0;  // delivery position: global batch, micro-batch within it on this rank
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

}  // namespace

std::unique_ptr<BatchSource> make_instruction_source(const LoaderOptions& opt, const TextEncoder& encode,
                                                     int32_t eos_id) {
  return std::make_unique<InstructionSource>(opt, encode, eos_id);
}

}  // namespace openlm::data
