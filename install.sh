#!/usr/bin/env bash
# Install vaelab (editable) with pip.  Usage: bash install.sh [test|bench]
#
# Where no PyTorch is installed, torch is pinned to the CPU build 2.13.0
# (constraints/cpu.txt): an unpinned torch would pull several GB of CUDA
# packages. Where a torch is already installed (say, your own CUDA build),
# it is kept as it is.
# `test` adds the test tools (with the export and tensorboard extras: onnx,
# onnxruntime and tensorboard, about 50 MB; nbclient and ipykernel to run
# docs/tutorial.ipynb), and Debian's chromium for the
# browser tests when apt-get is usable (those tests skip, saying why, when it
# is not); `bench` adds
# pythae, the peer trainer that benchmarks/train_speed.py measures against.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
target=.
case "${1:-}" in
    "") ;;
    test | bench) target=".[$1]" ;;
    *) echo "install.sh: unknown option '$1'; use: bash install.sh [test|bench]" >&2; exit 2 ;;
esac
constraints=()
if ! "$python" -c "import torch" 2>/dev/null; then
    constraints=(-c constraints/cpu.txt)
fi
"$python" -m pip install --quiet --disable-pip-version-check -e "$target" "${constraints[@]}"
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "install.sh: could not install chromium; the browser tests will be skipped" >&2
    else
        echo "install.sh: no chromium and no root apt-get; the browser tests will be skipped" >&2
    fi
fi
