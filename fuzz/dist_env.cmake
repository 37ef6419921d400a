# Slurm host lists and per-node task counts (core/dist_env.cpp): torch-free, fast.
# Seed corpus: fuzz/corpus/dist_env/.
openlm_fuzzer(dist_env SOURCES ${ROOT}/fuzz/dist_env.cpp ${ROOT}/openlm_cpp/core/dist_env.cpp)
