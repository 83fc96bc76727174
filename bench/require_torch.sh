# Sourced by the benchmarks whose reference is PyTorch: makes sure $py (default Debian's
# /usr/bin/python3) imports torch, installing Debian's python3-torch if it does not, or exits 1
# (a benchmark without its reference must not print seqrec's rows alone and succeed).
py="${PYTHON:-/usr/bin/python3}"
if ! "$py" -c "import torch" 2>/dev/null; then
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-torch >&2 ||
    { echo "cannot install python3-torch: no PyTorch reference, no benchmark" >&2; exit 1; }
  "$py" -c "import torch" 2>/dev/null || { echo "$py cannot import torch: no PyTorch reference" >&2; exit 1; }
fi
