// SentencePiece through the libopenlm_spm.so plugin, loaded into its own link-map namespace
// (spm_plugin/spm_abi.h explains the protobuf clash that makes this necessary).
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/spm_plugin/spm_abi.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm {
namespace {

struct Plugin {
  decltype(&olm_spm_load) load;
  decltype(&olm_spm_free) free;
  decltype(&olm_spm_info) info;
  decltype(&olm_spm_encode) encode;
  decltype(&olm_spm_decode) decode;
  decltype(&olm_spm_release) release;
  decltype(&olm_spm_train) train;
  decltype(&olm_spm_piece_to_id) piece_to_id;
  decltype(&olm_spm_id_info) id_info;
};

/// Candidate locations: $OPENLM_SPM_PLUGIN, beside the executable (../lib), the build tree.
std::vector<std::string> plugin_paths() {
  std::vector<std::string> out;
  if (const char* e = std::getenv("OPENLM_SPM_PLUGIN"); e && *e) out.push_back(e);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path().parent_path() / "lib" / "libopenlm_spm.so").string());
#ifdef OPENLM_SPM_PLUGIN_PATH
  out.push_back(OPENLM_SPM_PLUGIN_PATH);
#endif
  out.push_back("libopenlm_spm.so");
  return out;
}

const Plugin& plugin() {
  static Plugin p{};
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    std::string tried;
    for (auto& path : plugin_paths()) {
      // A link-map namespace of its own: SentencePiece, its embedded protobuf and its own
      // libstdc++ instance never meet LibTorch's (RTLD_DEEPBIND alone breaks iostreams).
      h = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h) break;
      tried += "\n  " + path + ": " + dlerror();
    }
    if (!h) {
      failure = "cannot load the SentencePiece plugin libopenlm_spm.so (set OPENLM_SPM_PLUGIN):" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* s = dlsym(h, name);
      if (!s) failure = std::string("SentencePiece plugin lacks ") + name;
      return s;
    };
    p.load = reinterpret_cast<decltype(p.load)>(sym("olm_spm_load"));
    p.free = reinterpret_cast<decltype(p.free)>(sym("olm_spm_free"));
    p.info = reinterpret_cast<decltype(p.info)>(sym("olm_spm_info"));
    p.encode = reinterpret_cast<decltype(p.encode)>(sym("olm_spm_encode"));
    p.decode = reinterpret_cast<decltype(p.decode)>(sym("olm_spm_decode"));
    p.release = reinterpret_cast<decltype(p.release)>(sym("olm_spm_release"));
    p.train = reinterpret_cast<decltype(p.train)>(sym("olm_spm_train"));
    p.piece_to_id = reinterpret_cast<decltype(p.piece_to_id)>(sym("olm_spm_piece_to_id"));
    p.id_info = reinterpret_cast<decltype(p.id_info)>(sym("olm_spm_id_info"));
  });
  if (!failure.empty()) throw Error(failure);
  return p;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    if (!std::filesystem::exists(path)) throw DataError("SentencePiece model '" + path + "' not found");
    char err[512] = {0};
    h_ = plugin().load(path.c_str(), err, sizeof err);
    if (!h_) throw DataError("cannot load SentencePiece model '" + path + "': " + err);
    plugin().info(h_, &vocab_, &eos_, &bos_, &unk_);
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    uint64_t hash = 1469598103934665603ULL;  // FNV-1a of the model bytes: a content identity
    for (unsigned char c : ss.str()) hash = (hash ^ c) * 1099511628211ULL;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash));
    id_ = "sentencepiece:" + std::string(buf);
    for (int i = 0; i < vocab_; ++i) {
      char piece[256] = {0};
      if (plugin().id_info(h_, i, piece, sizeof piece) == 1) special_.emplace_back(piece, i);
    }
  }
  ~SentencePieceTokenizer() override { plugin().free(h_); }

  std::vector<int32_t> encode(const std::string& text) const override {
    int* ids = nullptr;
    size_t n = 0;
    char err[512] = {0};
    if (plugin().encode(h_, text.data(), text.size(), &ids, &n, err, sizeof err) != 0)
      throw DataError("SentencePiece encode failed (" + path_ + "): " + err);
    std::vector<int32_t> out(ids, ids + n);
    plugin().release(ids);
    return out;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    for (int& i : v)
      if (i < 0 || i >= vocab_) i = unk_;  // ids of a padded model vocab beyond the tokenizer's
    char* text = nullptr;
    size_t len = 0;
    char err[512] = {0};
    if (plugin().decode(h_, v.data(), v.size(), &text, &len, err, sizeof err) != 0)
      throw DataError("SentencePiece decode failed (" + path_ + "): " + err);
    std::string out(text, len);
    plugin().release(text);
    return out;
  }
  std::string type() const override { return "sentencepiece"; }
  int64_t vocab_size() const override { return vocab_; }
  int32_t eos_id() const override { return eos_; }
  int32_t bos_id() const override { return bos_; }
  std::string id() const override { return id_; }
  std::vector<std::string> files() const override { return {path_}; }
  std::vector<std::pair<std::string, int32_t>> special_tokens() const override { return special_; }
  bool is_special(int32_t id) const override {
    for (auto& [piece, i] : special_)
      if (i == id) return true;
    return false;
  }
  std::optional<int32_t> token_to_id(const std::string& token) const override {
    int id = plugin().piece_to_id(h_, token.data(), token.size());
    if (id < 0) return std::nullopt;
    return id;
  }

 private:
  std::string path_, id_;
  std::vector<std::pair<std::string, int32_t>> special_;
  void* h_ = nullptr;
  int vocab_ = 0, eos_ = -1, bos_ = -1, unk_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

void train_sentencepiece(const std::string& input, const std::string& model_prefix, int64_t vocab_size,
                         const std::string& model_type) {
  std::ostringstream args;
  // eos id 0 mirrors GPT-NeoX's end-of-text id; no bos; byte fallback so any text encodes.
  args << "--input=" << input << " --model_prefix=" << model_prefix << " --vocab_size=" << vocab_size
       << " --model_type=" << model_type << " --character_coverage=1.0"
       << " --eos_id=0 --unk_id=1 --bos_id=-1 --pad_id=-1 --num_threads=2"
       << " --input_sentence_size=2000000 --shuffle_input_sentence=true --minloglevel=2"
       << " --byte_fallback=true";
  char err[1024] = {0};
  if (plugin().train(args.str().c_str(), err, sizeof err) != 0)
    throw DataError("SentencePiece training on '" + input + "' failed: " + err);
}

}  // namespace openlm
