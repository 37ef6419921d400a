#include "downstream_fixtures.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"

namespace stdfs = std::filesystem;

namespace openlm::testing::downstream {

namespace {
/// UTF-8 of a code point below 0x800.
std::string utf8(int cp) {
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

}  // namespace

/// A byte-level BPE tokenizer.json without merges whose id of every byte is the byte's value: text
/// "abc" is ids 97 98 99, and " a" is two tokens (no prefix space needed).
std::string write_bytes_tokenizer(const std::string& path) {
  std::vector<int> bs;  // GPT-2's byte -> printable code point table
  for (int b = 33; b <= 126; ++b) bs.push_back(b);
  for (int b = 161; b <= 172; ++b) bs.push_back(b);
  for (int b = 174; b <= 255; ++b) bs.push_back(b);
  std::vector<int> cp(256, -1);
  for (int b : bs) cp[b] = b;
  int extra = 0;
  for (int b = 0; b < 256; ++b)
    if (cp[b] < 0) cp[b] = 256 + extra++;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[utf8(cp[b])] = b;
  json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json t = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", json::array()},
            {"normalizer", nullptr}, {"pre_tokenizer", bl}, {"post_processor", nullptr}, {"decoder", bl},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                       {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                       {"byte_fallback", false}, {"vocab", vocab}, {"merges", json::array()}}}};
  std::ofstream(path) << t.dump();
  return path;
}

/// Sequences of kSeqLen + 1 letters cycling a..z (ids 97..122) from random starts.
std::string write_letter_shards(const std::string& dir, int64_t n) {
  stdfs::create_directories(dir);
  openlm::data::NativeShardWriter w(dir + "/letters" + openlm::data::kNativeExt, 2, kSeqLen + 1, "");
  uint64_t s = 99;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    std::vector<int64_t> seq(kSeqLen + 1);
    for (int64_t t = 0; t <= kSeqLen; ++t) seq[t] = 97 + static_cast<int64_t>((s >> 33) % 26 + t) % 26;
    w.append(seq.data(), seq.size());
  }
  openlm::data::write_manifest(dir + "/manifest.jsonl", {{"letters", w.count(), "", openlm::data::ShardFormat::Native}});
  w.finish();
  return dir + "/manifest.jsonl";
}

/// One tiny run (d 32, 2 layers, seq 24, vocab 320: the byte tokenizer's 256 ids and the NeoX test
/// tokenizer's 297 fit) trained on the letter cycle, shared by every test.
const Base& base() {
  static const Base b_ = [] {
    Base b;
    b.root = temp_dir("downstream_base");
    b.run = b.root + "/run";
    b.bytes_tok = write_bytes_tokenizer(b.root + "/bytes_tokenizer.json");
    b.neox_tok = std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json";
    const std::string manifest = write_letter_shards(b.root + "/data", 256);
    std::ofstream(b.root + "/recipe.yaml")
        << "model: {name: t, dim: 32, n_layers: 2, n_heads: 4, seq_len: " << kSeqLen << ", vocab_size: 320}\n"
        << "data: {manifests: [{path: " << manifest << "}]}\n"
        << "batch: {global_batch_size: 16, micro_batch_size: 16}\n"
        << "optim: {lr: 2.0e-2, z_loss: 1.0e-4}\nschedule: {warmup: 5}\n"
        << "max_steps: 60\nrun_dir: " << b.run << "\nlogging: {tensorboard: false}\ncheckpoint: {every_steps: 30}\n";
    Result r = sh(q(bin()) + " train " + q(b.root + "/recipe.yaml"), 300);
    EXPECT_EQ(r.rc, 0) << r.out;
    return b;
  }();
  return b_;
}

void write_jsonl(const std::string& path, const std::vector<json>& recs) {
  std::ofstream f(path);
  for (const auto& r : recs) f << r.dump() << "\n";
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

/// The last line of `out` parsed as JSON (null when it is not).
json last_json(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  auto j = json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1), nullptr, false);
  return j.is_discarded() ? json() : j;
}

Result eval(const std::string& source, const std::string& args, std::string* out) {
  return sh(q(bin()) + " eval " + q(source) + " " + args, 120, out);
}

std::string letters(int64_t start, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += static_cast<char>('a' + (start + i) % 26);
  return s;
}

}  // namespace openlm::testing::downstream
