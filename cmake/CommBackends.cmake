# Build settings of the Communicator (openlm_cpp/parallel/comm_pg.cpp, the only c10d user).
#  - Gloo: c10d's ProcessGroupGloo.hpp includes gloo's own headers. Debian's libtorch-dev does not
#    ship them (libgloo-dev does); the PyTorch wheel keeps them under its include dir.
#  - NCCL: LibTorch built with CUDA exports USE_C10D_NCCL through torch_cuda, and its NCCL headers
#    include <nccl.h>, which the wheel keeps in the nvidia-nccl package. Found via NCCL_ROOT or
#    Python's nvidia.nccl; if absent, the NCCL path is compiled out (CUDA tensors then go via Gloo).
if(NOT TARGET openlm_parallel)
  return()
endif()
get_target_property(_parallel_type openlm_parallel TYPE)
if(_parallel_type STREQUAL "INTERFACE_LIBRARY")
  return()
endif()

find_path(OPENLM_GLOO_INCLUDE_DIR gloo/rendezvous/store.h HINTS ${TORCH_INCLUDE_DIRS})
if(NOT OPENLM_GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "gloo headers (gloo/rendezvous/store.h) not found: install libgloo-dev "
                      "(scripts/apt-packages.txt) or pass -DOPENLM_GLOO_INCLUDE_DIR=<dir>")
endif()
target_include_directories(openlm_parallel PRIVATE ${OPENLM_GLOO_INCLUDE_DIR})
# ProcessGroupGloo.hpp is empty without it; TorchConfig's torch_cpu exports it, but make sure.
target_compile_definitions(openlm_parallel PRIVATE USE_C10D_GLOO)

if(TARGET torch_cuda)
  set(_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT})
  find_program(OPENLM_PYTHON3 python3)
  if(OPENLM_PYTHON3)
    execute_process(COMMAND ${OPENLM_PYTHON3} -c "import nvidia.nccl;print(list(nvidia.nccl.__path__)[0])"
                    OUTPUT_VARIABLE _nccl_py OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    list(APPEND _nccl_hints ${_nccl_py})
  endif()
  find_path(OPENLM_NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
  find_file(OPENLM_NCCL_LIBRARY NAMES libnccl.so libnccl.so.2 HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64)
  if(OPENLM_NCCL_INCLUDE_DIR AND OPENLM_NCCL_LIBRARY)
    message(STATUS "Communicator: NCCL from ${OPENLM_NCCL_INCLUDE_DIR}")
    target_include_directories(openlm_parallel PRIVATE ${OPENLM_NCCL_INCLUDE_DIR})
    target_link_libraries(openlm_parallel PUBLIC ${OPENLM_NCCL_LIBRARY})
    target_compile_definitions(openlm_parallel PRIVATE USE_C10D_NCCL)
  else()
    message(WARNING "Communicator: nccl.h not found (set NCCL_ROOT); building without the NCCL path")
    target_compile_options(openlm_parallel PRIVATE -UUSE_C10D_NCCL)
  endif()
endif()
