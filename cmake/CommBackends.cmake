# Build settings of the Communicator (openlm_cpp/parallel/comm_pg.cpp, the only c10d user).
#  - Gloo: c10d's ProcessGroupGloo.hpp includes gloo's own headers. Debian's libtorch-dev does not
#    ship them (libgloo-dev does); the PyTorch wheel keeps them under its include dir.
#  - NCCL: LibTorch built with CUDA exports USE_C10D_NCCL through torch_cuda, and its NCCL headers
#    include <nccl.h>, which the wheel keeps in the nvidia-nccl package. Found via OPENLM_PYTHON's
#    nvidia.nccl or NCCL_ROOT; a CUDA LibTorch without NCCL is a configure error.
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
  # The NCCL that libtorch_cuda loads at run time is the wheel's (nvidia-nccl-cu13); compile and
  # link against the same one, found through the Python that owns the wheel (OPENLM_PYTHON, set
  # by scripts/setup-torch2.sh), NCCL_ROOT, or the system (CUDA toolkit) as a last resort.
  set(OPENLM_PYTHON "" CACHE FILEPATH "Python interpreter of the torch wheel (finds nvidia-nccl)")
  set(_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT})
  set(_py ${OPENLM_PYTHON})
  if(NOT _py)
    find_program(_py NAMES python3)
  endif()
  if(_py)
    execute_process(COMMAND ${_py} -c "import nvidia.nccl;print(list(nvidia.nccl.__path__)[0])"
                    OUTPUT_VARIABLE _nccl_py OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    list(PREPEND _nccl_hints ${_nccl_py})
  endif()
  find_path(OPENLM_NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
  find_file(OPENLM_NCCL_LIBRARY NAMES libnccl.so.2 libnccl.so HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64)
  if(NOT OPENLM_NCCL_INCLUDE_DIR OR NOT OPENLM_NCCL_LIBRARY)
    # A CUDA build without NCCL would train multi-GPU over Gloo at a fraction of the speed: refuse.
    message(FATAL_ERROR "Communicator: LibTorch has CUDA but nccl.h/libnccl.so.2 were not found "
                        "(looked in: ${_nccl_hints} and the system paths). Pass -DOPENLM_PYTHON=<the "
                        "python whose site-packages hold torch and nvidia-nccl> or -DNCCL_ROOT=<dir>.")
  endif()
  message(STATUS "Communicator: NCCL ${OPENLM_NCCL_LIBRARY} (headers ${OPENLM_NCCL_INCLUDE_DIR})")
  target_include_directories(openlm_parallel PRIVATE ${OPENLM_NCCL_INCLUDE_DIR})
  target_link_libraries(openlm_parallel PUBLIC ${OPENLM_NCCL_LIBRARY} torch_cuda)
  # libtorch_cuda needs NCCL symbols newer than a system libnccl (e.g. the CUDA toolkit's in
  # ldconfig's cache) may have: every LibTorch target resolves it to the same wheel library.
  get_filename_component(_nccl_dir ${OPENLM_NCCL_LIBRARY} DIRECTORY)
  target_link_libraries(openlm_torch INTERFACE ${OPENLM_NCCL_LIBRARY})
  target_link_options(openlm_torch INTERFACE "LINKER:-rpath-link,${_nccl_dir}")
  target_compile_definitions(openlm_parallel PRIVATE USE_C10D_NCCL)
endif()
