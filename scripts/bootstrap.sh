#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 machine: installs the missing Debian packages, builds seqrec,
# then runs the demo (`bootstrap.sh demo`) or the whole test suite (`bootstrap.sh test`).
set -euo pipefail

mode="${1:-demo}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SEQREC_BUILD_DIR:-$root/build}"

# Everything comes from Debian packages (libgloo-dev: the headers c10d's Gloo process group needs
# for multi-process training). libopenblas0-openmp matters for speed: without it
# libtorch's BLAS calls go to the reference BLAS, about 7x slower for training.
packages=(cmake ninja-build g++ libtorch-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
          libgtest-dev libopenblas0-openmp libpcre2-dev pkg-config libgloo-dev
          libsnappy-dev libzstd-dev zlib1g-dev libcpp-httplib-dev libfaiss-dev
          libstb-dev
          clang-14 libfuzzer-14-dev)  # fuzz/run.sh (CI)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
ninja -C "$build" -j"$(nproc)" >&2

case "$mode" in
  demo) SEQREC="$build/seqrec" "$root/scripts/demo.sh" ;;
  test) cd "$build" && ctest --output-on-failure -j"$(nproc)" ;;
  build) ;;
  *) echo "usage: $0 [demo|test|build]" >&2; exit 2 ;;
esac
