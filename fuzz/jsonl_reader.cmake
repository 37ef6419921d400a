# prepare-data's streaming input reader: JSONL / text lines, gzip (zlib) and zstd streams, the JSONL
# field picker. Seed corpus: fuzz/corpus/jsonl_reader/ (first byte: 0 JSONL, 1 text, 2 gzip, 3 zstd).
pkg_check_modules(JSONL_ZLIB REQUIRED IMPORTED_TARGET zlib)
pkg_check_modules(JSONL_ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(JSONL_ICU REQUIRED IMPORTED_TARGET icu-uc)
openlm_fuzzer(jsonl_reader SOURCES ${ROOT}/fuzz/jsonl_reader.cpp ${ROOT}/data_loader/doc_reader.cpp
              ${ROOT}/openlm_cpp/tokenizer/unicode_text.cpp
              LIBS PkgConfig::JSONL_ZLIB PkgConfig::JSONL_ZSTD PkgConfig::JSONL_ICU)
