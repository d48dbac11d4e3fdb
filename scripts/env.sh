# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this
# scripts/env.sh: sourced (never run) by scripts/*.sh so that setup-deps.sh,
# test.sh, demo.sh, bench.sh and every CMake invocation agree on where the
# dependencies live. It only defines shell variables: it exports nothing,
# prints nothing and changes nothing on disk.
#
#   MEDQUANT_ROOT           the repository (this file's parent folder)
#   MEDQUANT_CACHE          per-user cache outside the repo (override from the environment)
#   MEDQUANT_LLAMA_VERSION  pinned llama.cpp, "<llama-cpp-python version>-b<llama.cpp build>"
#   MEDQUANT_LLAMA_PREFIX   its install prefix: bin/ lib/ include/ share/llama.cpp/
#   MEDQUANT_VENV           Python venv for the peer tests (git-ignored)
#
# CMake finds llama.cpp with: cmake -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX" ...
#
# To move the llama.cpp pin: change the four MEDQUANT_LLAMA_CPP_* values below
# together (the commit is the one named for that version in the sdist's
# CHANGELOG.md; setup-deps.sh checks it), then run scripts/setup-deps.sh.

MEDQUANT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# llama.cpp is taken from the llama-cpp-python sdist on PyPI (vendor/llama.cpp).
MEDQUANT_LLAMA_CPP_PY_VERSION=0.3.36
MEDQUANT_LLAMA_CPP_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
MEDQUANT_LLAMA_CPP_COMMIT=0c1e57098   # ggml-org/llama.cpp commit vendored by that sdist
MEDQUANT_LLAMA_CPP_BUILD=11312        # llama.cpp release number of that commit (tag b11312)

MEDQUANT_LLAMA_VERSION="${MEDQUANT_LLAMA_CPP_PY_VERSION}-b${MEDQUANT_LLAMA_CPP_BUILD}"

: "${MEDQUANT_CACHE:=${HOME:-$(cd ~ && pwd)}/.cache/medquant}"
: "${MEDQUANT_LLAMA_PREFIX:=${MEDQUANT_CACHE}/llama.cpp-${MEDQUANT_LLAMA_VERSION}}"
: "${MEDQUANT_VENV:=${MEDQUANT_ROOT}/.venv}"
