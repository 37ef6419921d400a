// Linked into every executable that links LibTorch (CMake: openlm_torch's interface objects).
//
// Debian's LibTorch runs its element-wise ops on OpenMP (libgomp) and its matrix products on
// OpenBLAS, whose pthreads build keeps a thread pool of its own. With both pools sized to the
// cores, an idle libgomp worker busy-spins after every parallel region (libgomp's default spin
// count) while OpenBLAS's workers need that core for the next GEMM, and OpenBLAS's idle workers
// sched_yield through the next element-wise op: on 2 cores a training step spent about half its
// CPU time spinning (perf: ~30% in libgomp's wait loop, ~27% in sched_yield) and ran at 0.4x the
// speed it reaches when idle OpenMP workers sleep (docs/ARCHITECTURE.md, "CPU threads").
//
// libgomp reads its wait policy once, in its own constructor, from the environment the process
// started with: this function sits in the executable's .preinit_array, which the dynamic loader
// runs after relocation and before any library's constructor. A setenv() there does not survive
// (libc's own constructor, which runs next, resets `environ` to the initial block), so when the
// policy has to change the program executes itself again (/proc/self/exe, same pid, arguments and
// descriptors; ~0.1-0.3 s once per process) with OMP_WAIT_POLICY=PASSIVE added. That happens only
// when (1) the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT and (2) the process carries a
// pthreads OpenBLAS (openblas_get_parallel() == 1); with MKL or an OpenMP OpenBLAS (the PyPI
// wheel) there is one pool and nothing changes. OPENLM_KEEP_OMP_WAIT_POLICY=1 turns it off.
// Child processes (the launcher's ranks) inherit the policy and do not execute again.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace {

// getenv() cannot be used this early (libc's `environ` is set by its own constructor): read the
// initial block the loader hands over.
bool env_set(char** envp, const char* name) {
  const std::size_t len = std::strlen(name);
  for (std::size_t i = 0; envp != nullptr && envp[i] != nullptr; ++i)
    if (std::strncmp(envp[i], name, len) == 0 && envp[i][len] == '=' && envp[i][len + 1] != '\0') return true;
  return false;
}

void passive_omp_wait_if_blas_has_own_pool(int, char** argv, char** envp) {
  for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENLM_KEEP_OMP_WAIT_POLICY", "OPENLM_SET_OMP_WAIT_POLICY"})
    if (env_set(envp, name)) return;
  using GetParallel = int (*)();
  auto get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  if (get_parallel == nullptr || get_parallel() != 1) return;  // no OpenBLAS, or not its pthreads build
  std::size_t n = 0;
  while (envp != nullptr && envp[n] != nullptr) ++n;
  auto** env = static_cast<char**>(std::calloc(n + 3, sizeof(char*)));
  if (env == nullptr) return;
  for (std::size_t i = 0; i < n; ++i) env[i] = envp[i];
  env[n] = const_cast<char*>("OMP_WAIT_POLICY=PASSIVE");
  env[n + 1] = const_cast<char*>("OPENLM_SET_OMP_WAIT_POLICY=1");  // tells the program who chose it
  execve("/proc/self/exe", argv, env);
  std::free(env);  // no /proc: run on with the default policy
}

}  // namespace

__attribute__((section(".preinit_array"), used)) static void (*const openlm_omp_wait_preinit)(int, char**, char**) =
    &passive_omp_wait_if_blas_has_own_pool;
