# Slurm host lists and per-node task counts (core/dist_env.cpp): torch-free, fast.
openlm_fuzzer(fuzz_dist_env SOURCES ${ROOT}/fuzz/fuzz_dist_env.cpp ${ROOT}/openlm_cpp/core/dist_env.cpp)
