// `openlm tokenizer train --input FILE --model-prefix P --vocab-size N` and `openlm tokenizer encode`.
#include <iostream>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace {
struct Args {
  std::string input, prefix, type = "bpe", model, text;
  int64_t vocab = 4096;
};

openlm::cli::Registrar reg("tokenizer", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* tok = root.add_subcommand("tokenizer", "Train or apply a SentencePiece tokenizer");
  tok->require_subcommand(1);
  auto* train = tok->add_subcommand("train", "Train a SentencePiece model on a text file");
  train->add_option("--input", a->input, "text file, one sentence or paragraph per line")->required();
  train->add_option("--model-prefix", a->prefix, "writes PREFIX.model and PREFIX.vocab")->required();
  train->add_option("--vocab-size", a->vocab, "vocabulary size");
  train->add_option("--model-type", a->type, "bpe | unigram");
  train->callback([a] { openlm::train_sentencepiece(a->input, a->prefix, a->vocab, a->type); });
  auto* enc = tok->add_subcommand("encode", "Print the token ids of a text");
  enc->add_option("--model", a->model, "tokenizer.model")->required();
  enc->add_option("text", a->text, "text to encode")->required();
  enc->callback([a] {
    auto t = openlm::load_tokenizer("sentencepiece", a->model);
    for (auto id : t->encode(a->text)) std::cout << id << ' ';
    std::cout << std::endl;
  });
});
}  // namespace
