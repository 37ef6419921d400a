# Token-list scanners, gzip inflate and the native shard header parser: torch-free, fast.
# Seed corpus: fuzz/corpus/data_tokens/.
pkg_check_modules(DATA_TOKENS_DEFLATE REQUIRED IMPORTED_TARGET libdeflate)
openlm_fuzzer(data_tokens
  SOURCES ${ROOT}/fuzz/data_tokens.cpp ${ROOT}/data_loader/token_codec.cpp ${ROOT}/data_loader/native_shard.cpp
  LIBS PkgConfig::DATA_TOKENS_DEFLATE)
pkg_check_modules(DATA_TOKENS_XXHASH REQUIRED IMPORTED_TARGET libxxhash)
target_link_libraries(data_tokens PRIVATE PkgConfig::DATA_TOKENS_XXHASH)
