# Tar member index (data_loader/tar_format.cpp) and the member decoders behind it: torch-free, fast.
# Seed corpus: fuzz/corpus/data_tar/.
pkg_check_modules(DATA_TAR_DEFLATE REQUIRED IMPORTED_TARGET libdeflate)
openlm_fuzzer(data_tar
  SOURCES ${ROOT}/fuzz/data_tar.cpp ${ROOT}/data_loader/tar_format.cpp ${ROOT}/data_loader/token_codec.cpp
  LIBS PkgConfig::DATA_TAR_DEFLATE)
