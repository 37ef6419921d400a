# Byte-level BPE (tokenizer/bpe_tokenizer.cpp): arbitrary bytes through encode and decode of the
# GPT-NeoX-layout test asset and a Llama-3-style Split variant. Seed corpus: fuzz/corpus/bpe_tokenizer/.
pkg_check_modules(FUZZ_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(FUZZ_ICU REQUIRED IMPORTED_TARGET icu-uc)
openlm_fuzzer(bpe_tokenizer SOURCES ${ROOT}/fuzz/bpe_tokenizer.cpp ${ROOT}/openlm_cpp/tokenizer/bpe_tokenizer.cpp
              ${ROOT}/openlm_cpp/tokenizer/bpe_tokenizer_json.cpp
              ${ROOT}/openlm_cpp/tokenizer/unicode_text.cpp ${ROOT}/openlm_cpp/tokenizer/bpe_regex.cpp
              LIBS PkgConfig::FUZZ_PCRE2 PkgConfig::FUZZ_ICU)
target_compile_definitions(bpe_tokenizer PRIVATE OPENLM_SOURCE_DIR="${ROOT}")
