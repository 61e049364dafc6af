#!/usr/bin/env bash
# The GPU check of segfast's CUDA path, in one script (under 5 minutes on an H100):
#   1. builds segfast with CUDA (SEGFAST_CUDA=ON) into a temporary folder,
#   2. runs the GPU tests (tests/test_cuda.py: GPU results == CPU results on the same
#      minibatches, to float tolerance) and the training tests on that build,
#   3. runs bench/bench_gpu.py (W1-W5 against torch.func.vmap and JAX on the same GPU, with
#      ratios and the share of the GPU's float32 peak; then the 784-16-10 scale runs),
#   4. profiles where W4's prediction and W5's epoch go, kernel by kernel.
#
# It works OFFLINE, on a GPU machine that reaches no package registry: the build tools come
# from wheels carried beside the checkout, and the benchmark data too, in $SEGFAST_GPU_DIR
# (default .gpu/ in the repository root, which git ignores):
#   .gpu/wheels/   scikit-build-core, pybind11 and their pure-Python dependencies
#   .gpu/data/     Fashion-MNIST's four IDX files
# Fill it once on a machine with network access:   bench/gpu_check.sh --prepare
# The GPU machine needs python3 with numpy, pytest and torch (JAX too, for that anchor), CMake,
# and nvcc.
#
#   bench/gpu_check.sh              on the GPU machine, from anywhere in the checkout
#                                   (SEGFAST_GPU_COMPARE=1: also the per-layer training path)
#   bench/gpu_check.sh --dry-run    the same steps where no GPU is: the CUDA sources must build,
#                                   the GPU tests skip, and the benchmark runs tiny on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=$(realpath -m "${SEGFAST_GPU_DIR:-.gpu}")
PY=${PYTHON:-python3}
mode=${1:-run}

if [ "$mode" = "--prepare" ]; then
  mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/data"
  $PY -m pip download -q --no-deps --only-binary=:all: -d "$GPU_DIR/wheels" \
    scikit-build-core pybind11 pathspec packaging
  data=$($PY -c "import segfast.datasets as d; print(d._search_dirs('fashion-mnist', None)[0])" 2>/dev/null || true)
  for dir in "$data" /usr/share/datasets/fashion-mnist; do
    if ls "$dir"/*-ubyte* >/dev/null 2>&1; then cp "$dir"/*-ubyte* "$GPU_DIR/data/"; break; fi
  done
  ls -l "$GPU_DIR/wheels" "$GPU_DIR/data"
  exit 0
fi
if [ "$mode" != "run" ] && [ "$mode" != "--dry-run" ]; then
  echo "usage: bench/gpu_check.sh [--prepare | --dry-run]" >&2
  exit 2
fi
if ! ls "$GPU_DIR"/wheels/scikit_build_core-*.whl "$GPU_DIR"/wheels/pybind11-*.whl >/dev/null 2>&1; then
  echo "no build wheels in $GPU_DIR/wheels: run bench/gpu_check.sh --prepare on a machine with network access" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== 1. build with CUDA (offline, from $GPU_DIR/wheels)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
$PY -m pip install -q --no-index --find-links "$GPU_DIR/wheels" --target "$work/tools" \
  scikit-build-core pybind11
arch=${SEGFAST_CUDA_ARCH:-$([ "$mode" = run ] && nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || echo "80;90")}
start=$(date +%s)
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) PYTHONPATH="$work/tools" $PY -m pip install -q --no-index --no-deps \
  --no-build-isolation --target "$work/site" -C cmake.define.SEGFAST_CUDA=ON \
  -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$arch" -C build-dir="$work/build" .
echo "built in $(( $(date +%s) - start )) s for CUDA architecture(s) $arch"
export PYTHONPATH="$work/site"
$PY - <<'EOF'
import segfast
print("segfast", segfast.__version__, "has_cuda:", segfast.has_cuda, "cuda_available:", segfast.cuda_available())
assert segfast.has_cuda, "the build has no CUDA path"
if segfast.cuda_available():
    print("GPU:", segfast._core.cuda_device_name())
else:
    print("no usable GPU here:", segfast._core.cuda_unavailable_reason())
EOF

echo "== 2. GPU tests (GPU == CPU on the same minibatches), training tests on this build"
tests_rc=0  # a failure is reported at the end; the benchmarks still run
(cd tests && $PY -m pytest -q -p no:cacheprovider test_cuda.py test_train.py) || tests_rc=$?

echo "== 3. benchmarks against torch.func.vmap and JAX on the same device"
if [ "$mode" = "--dry-run" ]; then
  $PY bench/bench_gpu.py --dry-run --repeats 2 --scale 1000
else
  SEGFAST_DATA_DIR="$GPU_DIR/data" $PY bench/bench_gpu.py --repeats 5 --scale ${SEGFAST_GPU_SCALE:-10000,100000}
  if [ -n "${SEGFAST_GPU_COMPARE:-}" ]; then  # about 15 s more
    echo "-- the per-layer path (SEGFAST_CUDA_KERNELS=layered), for comparison:"
    SEGFAST_CUDA_KERNELS=layered SEGFAST_DATA_DIR="$GPU_DIR/data" $PY bench/bench_gpu.py --repeats 3 \
      --segfast-only --workloads ${SEGFAST_GPU_COMPARE_WORKLOADS:-W1,W2,W3,W5} --scale 10000
    echo "-- prediction with plain (unstaged) host copies (SEGFAST_CUDA_PINNED=0), for comparison:"
    SEGFAST_CUDA_PINNED=0 SEGFAST_DATA_DIR="$GPU_DIR/data" $PY bench/bench_gpu.py --repeats 5 --segfast-only \
      --workloads W4
  fi
fi

echo "== 4. where the GPU time goes, kernel by kernel"
if [ "$mode" = run ]; then
  SEGFAST_DATA_DIR="$GPU_DIR/data" $PY bench/profile_gpu.py --workloads W4,W5 || echo "(profile failed)"
fi
if [ "$mode" = run ] && [ -n "${SEGFAST_GPU_NCU:-}" ] && command -v ncu >/dev/null; then
  echo "== 5. Nsight Compute on the resident epoch kernel ($SEGFAST_GPU_NCU), the second epoch"
  for w in ${SEGFAST_GPU_NCU//,/ }; do
    SEGFAST_DATA_DIR="$GPU_DIR/data" ncu --clock-control none --section SpeedOfLight --section WarpStateStats \
      --section Occupancy --section MemoryWorkloadAnalysis -k regex:resident_epoch --launch-skip 1 --launch-count 1 \
      $PY bench/profile_gpu.py --plain --workloads "$w" 2>&1 | grep -v "^==PROF==" | tail -60 || echo "(ncu failed)"
  done
fi
if [ "$tests_rc" != 0 ]; then
  echo "GPU CHECK FAILED: the tests above failed (pytest exit code $tests_rc)"
fi
exit "$tests_rc"
