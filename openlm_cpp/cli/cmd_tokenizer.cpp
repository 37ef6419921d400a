// `openlm tokenizer train|encode|decode|info`: SentencePiece training; encoding and decoding with
// a SentencePiece .model or a Hugging Face tokenizer.json (byte-level BPE). docs/TOKENIZERS.md.
#include <algorithm>
#include <climits>
#include <iostream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace {
struct Args {
  std::string input, prefix, type = "bpe", model, text, tokenizer, tok_type = "auto";
  int64_t vocab = 4096;
  bool lines = false, nul = false, skip_special = false, json = false;
};

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::unique_ptr<openlm::Tokenizer> open_tokenizer(const Args& a) {
  if (!a.tokenizer.empty() && !a.model.empty())
    throw openlm::ConfigError("--tokenizer", "", 0, "give either --tokenizer or --model, not both");
  const std::string& path = a.tokenizer.empty() ? a.model : a.tokenizer;
  if (path.empty()) throw openlm::ConfigError("--tokenizer", "", 0, "missing: the tokenizer file (.model or tokenizer.json)");
  return openlm::load_tokenizer(a.tok_type, path);
}

/// Invalid UTF-8 is replaced (U+FFFD) as Python's errors="replace" does; say so on stderr.
void warn_invalid(const std::string& text) {
  if (openlm::unicode::valid_utf8_prefix(text) == text.size()) return;
  std::size_t n = 0;
  openlm::unicode::replace_invalid_utf8(text, &n);
  std::cerr << "openlm tokenizer: the input is not valid UTF-8; " << n
            << " ill-formed sequence(s) encoded as U+FFFD (as Python's errors=\"replace\")" << std::endl;
}

void print_ids(const std::vector<int32_t>& ids, std::string& out) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(' ');
    out += std::to_string(ids[i]);
  }
  out.push_back('\n');
}

std::vector<int32_t> parse_ids(const std::string& line, int64_t line_no) {
  std::vector<int32_t> ids;
  std::istringstream ss(line);
  std::string w;
  while (ss >> w) {
    std::size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(w, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos != w.size() || v < 0 || v > INT32_MAX)
      throw openlm::ConfigError("stdin", "", static_cast<int>(line_no), "not a token id: '" + w + "'");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

openlm::cli::Registrar reg("tokenizer", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* tok = root.add_subcommand("tokenizer", "Train a SentencePiece tokenizer; encode or decode with a "
                                               "SentencePiece .model or a Hugging Face tokenizer.json");
  tok->require_subcommand(1);
  auto* train = tok->add_subcommand("train", "Train a SentencePiece model on a text file");
  train->add_option("--input", a->input, "text file, one sentence or paragraph per line")->required();
  train->add_option("--model-prefix", a->prefix, "writes PREFIX.model and PREFIX.vocab")->required();
  train->add_option("--vocab-size", a->vocab, "vocabulary size");
  train->add_option("--model-type", a->type, "bpe | unigram");
  train->callback([a] { openlm::train_sentencepiece(a->input, a->prefix, a->vocab, a->type); });

  auto add_common = [a](CLI::App* sub) {
    sub->add_option("--tokenizer", a->tokenizer, "tokenizer.json (byte-level BPE), a SentencePiece .model, "
                                                 "or a directory holding one");
    sub->add_option("--model", a->model, "same as --tokenizer (older spelling)");
    sub->add_option("--type", a->tok_type, "auto | bpe | sentencepiece (auto: by the file name)")
        ->check(CLI::IsMember({"auto", "bpe", "sentencepiece"}))
        ->capture_default_str();
  };

  auto* enc = tok->add_subcommand("encode", "Print the token ids of UTF-8 text read from stdin (or given as an "
                                            "argument), space-separated, on one line");
  add_common(enc);
  enc->add_flag("--lines", a->lines, "one output line of ids per input line (the newline is not encoded)");
  enc->add_flag("--nul", a->nul, "texts separated by NUL bytes (so they may hold newlines); one output line each")
      ->excludes("--lines");
  enc->add_option("text", a->text, "text to encode instead of stdin");
  enc->callback([a] {
    auto t = open_tokenizer(*a);
    std::string out;
    if (!a->text.empty()) {
      warn_invalid(a->text);
      print_ids(t->encode(a->text), out);
    } else {
      std::string in = read_stdin();
      warn_invalid(in);
      if (!a->lines && !a->nul) {
        print_ids(t->encode(in), out);
      } else {
        const char sep = a->nul ? '\0' : '\n';
        std::size_t pos = 0;
        while (pos < in.size()) {
          std::size_t nl = in.find(sep, pos);
          std::size_t end = nl == std::string::npos ? in.size() : nl;
          print_ids(t->encode(in.substr(pos, end - pos)), out);
          pos = nl == std::string::npos ? in.size() : nl + 1;
        }
      }
    }
    std::cout << out << std::flush;
  });

  auto* dec = tok->add_subcommand("decode", "Print the text of token ids (whitespace-separated) read from stdin");
  add_common(dec);
  dec->add_flag("--lines", a->lines, "one output line of text per input line of ids");
  dec->add_flag("--nul", a->nul, "one text per input line of ids, each followed by a NUL byte")->excludes("--lines");
  dec->add_flag("--skip-special-tokens", a->skip_special, "drop special tokens (e.g. <|endoftext|>)");
  dec->callback([a] {
    auto t = open_tokenizer(*a);
    std::string in = read_stdin();
    auto decode = [&](std::vector<int32_t> ids) {
      if (a->skip_special) ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t i) { return t->is_special(i); }),
                                     ids.end());
      return t->decode(ids);
    };
    if (!a->lines && !a->nul) {
      std::cout << decode(parse_ids(in, 0)) << std::flush;
      return;
    }
    std::istringstream ss(in);
    std::string line;
    int64_t n = 0;
    while (std::getline(ss, line)) std::cout << decode(parse_ids(line, ++n)) << (a->nul ? '\0' : '\n');
    std::cout << std::flush;
  });

  auto* info = tok->add_subcommand("info", "Type, vocabulary size, special tokens and identity of a tokenizer");
  add_common(info);
  info->add_flag("--json", a->json, "one JSON object");
  info->callback([a] {
    auto t = open_tokenizer(*a);
    nlohmann::json j = {{"type", t->type()}, {"vocab_size", t->vocab_size()}, {"eos_id", t->eos_id()},
                        {"bos_id", t->bos_id()}, {"id", t->id()}, {"files", t->files()}};
    nlohmann::json sp = nlohmann::json::object();
    for (auto& [content, id] : t->special_tokens()) sp[content] = id;
    j["special_tokens"] = sp;
    std::cout << (a->json ? j.dump() : j.dump(2)) << std::endl;
  });
});
}  // namespace
