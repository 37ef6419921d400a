# Restricted torch.save pickle reader (openlm_cpp/checkpoint/pt_pickle.cpp): torch-free, fast.
# Seed corpus: fuzz/corpus/pt_pickle/ (data.pkl streams of torch.save files written by python3-torch).
openlm_fuzzer(pt_pickle SOURCES ${ROOT}/fuzz/pt_pickle.cpp ${ROOT}/openlm_cpp/checkpoint/pt_pickle.cpp)
