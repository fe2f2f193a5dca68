#!/usr/bin/env bash
# One accelerator benchmark run: install the GPU build of JAX, then bench/accelerator.py
# (seeds per second for S = 1 ... 4096, fraction of the matmul peak, the chunk plans,
# wall(S) / wall(1)); under 8 minutes on one GPU. Writes results.json and results.md.
#
# Usage (from anywhere; relative paths are relative to the current directory):
#   bash bench/accelerator.sh [--no-install] [--dry-run] [accelerator.py options...]
#     --no-install  use the current Python environment (${PYTHON:-python}) as it is,
#                   e.g. one that already has the GPU build of JAX
#     --dry-run     no installation, CPU, tiny sizes, the same files (checks the script;
#                   passed on to accelerator.py, as is every option but --no-install)
#     e.g. --out DIR (default bench/results/accelerator), --budget-s 420
#
# Environment:
#   NEGRES_ACCELERATOR_VENV  the virtual environment to create or reuse
#                            (default .venv-accelerator in the repository root; gitignored)
#   PYTHON                   the interpreter that creates the venv (default python3), or
#                            that runs everything with --no-install / --dry-run (default
#                            python, else python3)
#   NEGRES_JAX_EXTRA         JAX's extra (default cuda12: NVIDIA's CUDA 12 libraries as pip
#                            wheels; cuda13 needs a newer driver, see JAX's install guide)
#   NEGRES_WHEELS=DIR        install offline from DIR (pip --no-index --find-links DIR), for a
#                            machine without internet access.
#
# Preparing NEGRES_WHEELS=DIR on a machine with internet access, for Python 3.11 on
# manylinux x86_64 (JAX's version is the pin in requirements.txt; several GB, mostly the
# CUDA libraries). promise, which tensorflow-datasets needs, has no wheel on PyPI: build it
# first (pure Python, any machine), so that the binary-only download finds it in DIR:
#   pip wheel --no-deps -w wheels promise==2.3
#   pip download -d wheels --find-links wheels --only-binary=:all: --python-version 3.11 \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -r requirements.txt "jax[cuda12]==0.10.2"
# (On Linux x86_64 with Python 3.11 itself, `pip wheel -w wheels -r requirements.txt
# "jax[cuda12]==0.10.2"` does both.) Copy wheels/ to the GPU machine, then
#   NEGRES_WHEELS=wheels PYTHON=python3.11 bash bench/accelerator.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

install=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --dry-run) install=0; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

if [[ $install == 1 ]]; then
  venv="${NEGRES_ACCELERATOR_VENV:-$repo/.venv-accelerator}"
  jax_version="$(sed -n 's/^jax==\([^[:space:]#]*\).*/\1/p' "$repo/requirements.txt")"
  if [[ -z $jax_version ]]; then
    echo "accelerator.sh: no 'jax==' pin in requirements.txt" >&2
    exit 1
  fi
  [[ -x $venv/bin/python ]] || "${PYTHON:-python3}" -m venv "$venv"
  pip_source=()
  if [[ -n ${NEGRES_WHEELS:-} ]]; then
    pip_source=(--no-index --find-links "$NEGRES_WHEELS")
  fi
  # One resolution of both, so the pins of requirements.txt and JAX's CUDA plugin agree.
  "$venv/bin/python" -m pip install --quiet ${pip_source[@]+"${pip_source[@]}"} \
    -r "$repo/requirements.txt" "jax[${NEGRES_JAX_EXTRA:-cuda12}]==$jax_version"
  python="$venv/bin/python"
else
  python="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
fi
installed_s=$SECONDS

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$python" "$repo/bench/accelerator.py" ${args[@]+"${args[@]}"}
echo "accelerator.sh: installation $([[ $install == 1 ]] && echo "${installed_s} s" || echo skipped)," \
  "benchmark $((SECONDS - installed_s)) s"
