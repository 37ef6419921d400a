# safetensors header parser + writer round trip (torch-free). Seed corpus: fuzz/corpus/safetensors/.
openlm_fuzzer(safetensors
  SOURCES ${ROOT}/fuzz/safetensors_fuzz.cpp
          ${ROOT}/openlm_cpp/checkpoint/safetensors.cpp
          ${ROOT}/openlm_cpp/checkpoint/atomic_file.cpp)
