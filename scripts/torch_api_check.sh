#!/usr/bin/env bash
# Syntax-checks every source and test file that includes LibTorch against another LibTorch, e.g. a
# CUDA PyTorch install, without building: g++ -fsyntax-only per file, in parallel.
#   scripts/torch_api_check.sh TORCH_DIR [extra g++ flags...]
# TORCH_DIR holds include/ (a pip install's site-packages/torch, or an unpacked LibTorch zip). The
# check compiles the Gloo path too (USE_C10D_GLOO) and, when the LibTorch has CUDA, the NCCL path
# (USE_C10D_NCCL): pass -I for nccl.h,
# CUDA's include folder and Gloo's headers where the compiler does not find them. Third-party
# headers (yaml-cpp, nlohmann, CLI11, pcre2, zstd, stb, snappy, cpp-httplib, faiss, gtest) must be
# on the include path. SEQREC_CHECK_FILES="a.cc b.cc" checks those files only. Prints one line per failing file and the distinct errors; exit 1 if any.
set -euo pipefail
torch=${1:?usage: $0 TORCH_DIR [extra g++ flags...]}
shift
[ -d "$torch/include/torch/csrc/api/include" ] || { echo "$0: $torch/include/torch/csrc/api/include not found" >&2; exit 2; }
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
inc="-isystem $torch/include"
[ "$torch/include" = /usr/include ] && inc=""  # Debian's LibTorch: already on the path
std=c++17
printf '#include <torch/torch.h>\nint main() {}\n' > "$logs/probe.cc"
g++ -std=c++17 -fsyntax-only $inc -isystem "$torch/include/torch/csrc/api/include" \
  "$logs/probe.cc" 2>/dev/null || std=c++20
stb=$(pkg-config --cflags stb 2>/dev/null || echo -I/usr/include/stb)
nccl=""  # the NCCL path only where this LibTorch has CUDA
[ -f "$torch/include/c10/cuda/impl/cuda_cmake_macros.h" ] && nccl=-DUSE_C10D_NCCL
export FLAGS="-std=$std -fsyntax-only -w -fopenmp -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_GLOO $nccl
  -DUSE_DISTRIBUTED -DSEQREC_SOURCE_DIR=\"$PWD\" -DSEQREC_BINARY=\"seqrec\" -Isrc -Itests $stb
  $inc -isystem $torch/include/torch/csrc/api/include $*"
export LOGS=$logs
files=$(echo "${SEQREC_CHECK_FILES:-$(grep -l torch src/seqrec/*/*.cc src/cli/*.cc tests/*/*.cc)}" | tr ' ' '\n')
echo "torch_api_check: $(echo "$files" | wc -l) files, -std=$std${nccl:+, NCCL}, against $torch"
echo "$files" | xargs -P "$(nproc)" -I{} sh -c 'g++ $FLAGS {} > "$LOGS/$(echo {} | tr / _).log" 2>&1 || echo "FAIL {}"' \
  | sort | tee "$logs/failed"
if [ -s "$logs/failed" ]; then
  grep -h "error" "$logs"/*.log | sed 's/^[^ ]* //' | sort | uniq -c | sort -rn | head -40
  exit 1
fi
echo "torch_api_check: all files compile"
