#include "openlm_cpp/train/default_corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data_loader/data_tools.h"
#include "data_loader/prepare_data.h"
#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace stdfs = std::filesystem;

namespace openlm {
namespace {

std::string default_dir() {
  if (const char* e = std::getenv("OPENLM_DATA_DIR"); e && *e) return e;
#ifdef OPENLM_SOURCE_DIR
  return std::string(OPENLM_SOURCE_DIR) + "/assets/generated/default_corpus";
#else
  return "assets/generated/default_corpus";
#endif
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

int64_t fortunes_to_documents(const std::string& fortune_dir, const std::string& out_path) {
  std::vector<stdfs::path> files;
  std::error_code ec;
  for (auto& e : stdfs::directory_iterator(fortune_dir, ec)) {
    auto name = e.path().filename().string();
    // Skip indexes (.dat), UTF-8 twins (.u8), and the files that are pictures rather than prose.
    if (!e.is_regular_file() || e.path().has_extension() || name == "ascii-art" || name == "art") continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw DataError("no fortune files in '" + fortune_dir + "': install the Debian packages 'fortunes' and "
                    "'fortunes-min' (scripts/setup.sh does)");
  std::string out;
  int64_t docs = 0;
  for (auto& f : files) {
    std::ifstream in(f);
    std::string line, doc;
    auto flush = [&] {
      if (!doc.empty()) {
        out += doc + "\n";
        ++docs;
      }
      doc.clear();
    };
    while (std::getline(in, line)) {
      if (trim(line) == "%") {
        flush();
        continue;
      }
      std::string t = trim(line);
      if (t.empty()) continue;  // keep blank lines as document separators only
      doc += t + "\n";
    }
    flush();
  }
  openlm::fs::write_file_atomic(out_path, out);
  return docs;
}

DefaultCorpus ensure_default_corpus(int64_t seq_len, int64_t vocab_size, const std::string& fortune_dir) {
  DefaultCorpus c;
  c.dir = default_dir();
  stdfs::create_directories(c.dir);
  c.text = c.dir + "/corpus.txt";
  if (!stdfs::exists(c.text)) {
    int64_t n = fortunes_to_documents(fortune_dir.empty() ? "/usr/share/games/fortunes" : fortune_dir, c.text);
    log::info("default corpus: {} documents from the fortunes packages -> {}", n, c.text);
  }
  std::string prefix = c.dir + "/tokenizer_" + std::to_string(vocab_size);
  c.tokenizer = prefix + ".model";
  if (!stdfs::exists(c.tokenizer)) {
    // SentencePiece wants one sentence per line: feed it the documents' lines.
    log::info("default corpus: training a SentencePiece tokenizer (vocab {})", vocab_size);
    std::string tmp_prefix = prefix + ".tmp" + std::to_string(::getpid());
    train_sentencepiece(c.text, tmp_prefix, vocab_size);
    stdfs::rename(tmp_prefix + ".vocab", prefix + ".vocab");
    stdfs::rename(tmp_prefix + ".model", c.tokenizer);
  }
  // corpus.txt split by document: train.txt and heldout.txt (docs/DATA_FORMATS.md, "Default corpus").
  const std::string train_txt = c.dir + "/train.txt", heldout_txt = c.dir + "/heldout.txt";
  if (!stdfs::exists(train_txt) || !stdfs::exists(heldout_txt)) {
    const std::vector<std::string> docs = data::split_documents(openlm::fs::read_file(c.text));
    std::string train, heldout;
    for (std::size_t i = 0; i < docs.size(); ++i)
      ((i + 1) % kHeldoutEvery == 0 ? heldout : train) += docs[i] + "\n\n";
    openlm::fs::write_file_atomic(heldout_txt, heldout);
    openlm::fs::write_file_atomic(train_txt, train);
  }
  const std::string stem = c.dir + "/seq" + std::to_string(seq_len) + "_v" + std::to_string(vocab_size);
  auto build = [&](const std::string& text, const std::string& shards) {
    const std::string manifest = shards + "/manifest.jsonl";
    if (stdfs::exists(manifest)) return manifest;
    // prepare-data with --no-pad: every full sequence of the concatenated documents, the tail dropped
    data::PrepareOptions o;
    o.inputs = {{text, 1.0}};
    o.tokenizer_path = c.tokenizer;
    o.tokenizer_type = "sentencepiece";
    o.seq_len = seq_len;
    o.seed = 0;
    o.no_pad = true;
    o.format = data::ShardFormat::Native;
    o.output_dir = shards + ".tmp" + std::to_string(::getpid());
    o.shard_sequences = 1024;
    stdfs::remove_all(o.output_dir);
    auto r = data::prepare_data(o);
    stdfs::remove_all(shards);
    stdfs::rename(o.output_dir, shards);
    log::info("default corpus: {} documents, {} tokens -> {} sequences of {} in {} shards", r.documents, r.tokens,
              r.sequences, seq_len + 1, r.shards);
    return manifest;
  };
  c.manifest = build(train_txt, stem + "_train");
  c.heldout = build(heldout_txt, stem + "_heldout");
  return c;
}

}  // namespace openlm
