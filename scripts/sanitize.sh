#!/usr/bin/env bash
# Builds cnnkit with -fsanitize=address,undefined (CMake option CNNKIT_SANITIZE)
# in its own virtual environment and build directory, then runs the kernel
# tests and the fuzz module under the sanitizers. Any report fails the run:
# UBSan does not recover (-fno-sanitize-recover) and ASan aborts on the first
# error. The pre-release check (see README, Contributing).
#
# usage: scripts/sanitize.sh [pytest args...]
#   SANITIZE_DIR  where the venv and build dir go (default: build/sanitize)
#   PYTHON        the interpreter to make the venv from (default: python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SANITIZE_DIR:-$root/build/sanitize}
python=${PYTHON:-python3}
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ]; then
  "$python" -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cython>=3.0.8" \
    ninja numpy pytest hypothesis scikit-learn scikit-image tqdm
fi
# A non-editable install: the tests run against the installed package.
"$dir/venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$root" \
  -Cbuild-dir="$dir/build" -Ccmake.define.CNNKIT_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo

# Python itself is not instrumented: the ASan runtime must come first.
libasan=$(${CXX:-c++} -print-file-name=libasan.so)
libubsan=$(${CXX:-c++} -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan:$libubsan${LD_PRELOAD:+:$LD_PRELOAD}"
# detect_leaks=0: CPython's interned objects and arenas look like leaks at exit.
# The fuzz module's huge requests must be MemoryError, not an ASan abort.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}
export CNNKIT_HYPOTHESIS_PROFILE=${CNNKIT_HYPOTHESIS_PROFILE:-ci}
# The instrumented kernels are several times slower.
export CNNKIT_FUZZ_TIME_LIMIT=${CNNKIT_FUZZ_TIME_LIMIT:-600}

kernel_tests=(test_anchors test_box_errors test_box_habits test_box_threads test_boxes test_conv
  test_conv_errors test_detection_windows test_felzenszwalb test_fused test_geometry_limits
  test_gram test_hostile_arguments test_image test_augment test_isa_paths test_matmul test_nms
  test_pool test_roi test_roi_errors test_selective_search test_windows test_winograd test_yolo
  test_fuzz_ops)
paths=()
for t in "${kernel_tests[@]}"; do paths+=("$root/tests/$t.py"); done
cd "$dir"  # not the source tree: import the installed cnnkit
"$dir/venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir="$root" -c "$root/pyproject.toml" \
  "${paths[@]}" "$@"
