#!/usr/bin/env bash
# LibTorch 2.x with CUDA and NCCL, from PyPI's torch wheel: creates the project's Python environment
# .venv/ (the pinned wheel with its nvidia-* dependencies, and the peer packages the tests compare
# against: scripts/requirements-torch2.txt), then configures and builds build-torch2/ against the
# wheel's LibTorch with the CUDA and NCCL paths compiled in. Needs the Debian packages of
# scripts/apt-packages.txt (installed here when missing) and the CUDA toolkit (nvcc); no GPU.
# Safe to rerun: the venv is reinstalled only when the requirements file changed, the build is
# incremental (ccache when installed).
set -euo pipefail
cd "$(dirname "$0")/.."
OPENLM_SETUP_NO_BUILD=1 scripts/setup.sh  # Debian packages only

# The CUDA toolkit: torch's CMake config needs nvcc and the CUDA headers even for C++-only code.
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
command -v nvcc >/dev/null || {
  echo "setup-torch2: the CUDA toolkit (nvcc) was not found; install it (docs/BUILDING.md) or put its bin/ on PATH" >&2
  exit 1
}

req=scripts/requirements-torch2.txt
con=scripts/constraints-torch2.txt  # pins the transitive dependencies too
stamp=.venv/.requirements.sha256
want=$(cat "$req" "$con" | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  py=/usr/bin/python3  # Debian's Python (python3-venv); the venv does not see its python3-torch 1.13
  [ -x "$py" ] || py=$(command -v python3)
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  echo "setup-torch2: installing $req into .venv (torch wheel + nvidia-* + peers, ~4 GB on disk)"
  .venv/bin/python -m pip install -q -r "$req" -c "$con"
  echo "$want" > "$stamp"
fi

torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
jobs=$(nproc 2>/dev/null || echo 2)
# The wheel's torch/ first on the prefix path, so its lib/ wins over Debian's /usr/lib libtorch.
cmake -S . -B build-torch2 -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_dir;$torch_dir/share/cmake" -DOPENLM_PYTHON="$PWD/.venv/bin/python" \
  ${OPENLM_CMAKE_ARGS:-} >/dev/null
cmake --build build-torch2 -j"$jobs"
