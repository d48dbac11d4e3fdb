#!/usr/bin/env bash
# scripts/setup-deps.sh: install everything medquant needs to build and test.
#
# Idempotent and safe to run on every call (scripts/test.sh does): each phase
# checks first and works only when needed; with nothing to do the script
# prints one line and ends in well under a second.
#
#   apt    Debian packages (APT_PACKAGES below). `apt-get update` + install
#          only when one is missing. Needs root, or sudo without a password.
#   venv   $MEDQUANT_VENV (.venv/ at the repo root) with the pinned
#          tests/peer/requirements.txt; rebuilt from scratch when the sha256
#          of that file differs from the one stored in the venv.
#   llama  llama.cpp at the pin of scripts/env.sh, from the llama-cpp-python
#          sdist on PyPI (vendor/llama.cpp), built once (Release, portable
#          AVX2 baseline, shared libs, CPU only) into $MEDQUANT_LLAMA_PREFIX,
#          outside the repo: bin/ (llama-quantize, llama-completion, ...),
#          lib/, include/, share/llama.cpp/ (convert_hf_to_gguf.py, gguf-py/).
#          Built into a temporary prefix that is renamed into place with a
#          stamp inside, so an interrupted build is redone, never half-used.
#          10-30 minutes cold on 2 cores (7 quiet, 21 busy); a redo with a
#          warm ccache takes under a minute.
#
# Usage: scripts/setup-deps.sh [--skip apt|venv|llama]... [--jobs N]
# Paths are defined in scripts/env.sh; logs of any work go to
# $MEDQUANT_CACHE/logs/. CMake then finds llama.cpp with
#   -DMEDQUANT_LLAMA_PREFIX="$MEDQUANT_LLAMA_PREFIX"   (see cmake/llama.cmake)
set -euo pipefail

# Debian packages for building, testing and the peer venv. Add yours here.
APT_PACKAGES=(
    build-essential cmake ninja-build ccache pkg-config git
    libonnx-dev libonnx-testdata libprotobuf-dev protobuf-compiler
    libsentencepiece-dev libstb-dev libcli11-dev libfmt-dev nlohmann-json3-dev
    libssl-dev libcurl4-openssl-dev
    libyaml-dev  # model card front matter (convert gguf)
    libgtest-dev libgmock-dev libbenchmark-dev
    libutf8proc-dev libpng-dev libjpeg-dev
    python3-venv
    chromium  # headless browser for the HTML report test (tests/peer/test_validate_gguf.py)
)

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# ---------------------------------------------------------------- options

SKIP=" "
JOBS=2
while (($#)); do
    case "$1" in
        --skip) SKIP+="${2:?--skip needs apt, venv or llama} "; shift 2 ;;
        --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-deps: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
skipped() { [[ "$SKIP" == *" $1 "* ]]; }

PYTHON="${MEDQUANT_PYTHON:-python3}"   # a pyenv shim here; any Python 3.11 will do
LOG_DIR="$MEDQUANT_CACHE/logs"
DID_WORK=0

say() { echo "setup-deps: $*"; }
die() { echo "setup-deps: error: $*" >&2; exit 1; }
elapsed() { local s=$(($(date +%s) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# run LOG CMD...: run CMD with its output appended to LOG; on failure show the
# end of LOG and stop.
run() {
    local log="$1"; shift
    echo "+ $*" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
        echo "setup-deps: error: command failed: $*" >&2
        tail -n 40 "$log" | sed 's/^/  | /' >&2
        die "full log: $log"
    fi
}

# One lock for the venv and llama phases, taken only when there is work, so
# two concurrent calls never build the same thing at once (apt locks itself).
LOCKED=0
lock() {
    ((LOCKED)) && return 0
    mkdir -p "$MEDQUANT_CACHE" "$LOG_DIR"
    exec 9>"$MEDQUANT_CACHE/setup-deps.lock"
    if ! flock -n 9; then
        say "waiting for another setup-deps.sh to finish"
        flock 9
    fi
    LOCKED=1
}

# ---------------------------------------------------------------- apt

apt_missing() {
    local -A have=()
    local name status
    while read -r name status; do
        [[ "$status" == ii ]] && have["$name"]=1
    done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
    for name in "${APT_PACKAGES[@]}"; do
        [[ -n "${have[$name]:-}" ]] || echo "$name"
    done
}

phase_apt() {
    if ! command -v dpkg-query >/dev/null; then
        say "apt: not a Debian system; install the equivalents of: ${APT_PACKAGES[*]}"
        return 0
    fi
    local missing
    mapfile -t missing < <(apt_missing)
    ((${#missing[@]})) || return 0

    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "apt: not root and no sudo; as root run: apt-get install -y ${missing[*]}"
        sudo=(sudo -n)
    fi
    local t0; t0=$(date +%s)
    mkdir -p "$LOG_DIR"
    local log="$LOG_DIR/apt.log"
    : >"$log"
    say "apt: installing ${#missing[@]} package(s): ${missing[*]}"
    run "$log" "${sudo[@]}" apt-get update -q
    run "$log" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    mapfile -t missing < <(apt_missing)
    ((${#missing[@]} == 0)) || die "apt: still missing after install: ${missing[*]} (log: $log)"
    say "apt: done in $(elapsed "$t0")"
    DID_WORK=1
}

# ---------------------------------------------------------------- venv

REQUIREMENTS="$MEDQUANT_ROOT/tests/peer/requirements.txt"
VENV_STAMP="$MEDQUANT_VENV/.requirements.sha256"

phase_venv() {
    [[ -f "$REQUIREMENTS" ]] || die "venv: $REQUIREMENTS is missing"
    local want; want="$(sha256sum "$REQUIREMENTS")"; want="${want%% *}"
    venv_ok() { [[ -x "$MEDQUANT_VENV/bin/python" && -f "$VENV_STAMP" && "$(<"$VENV_STAMP")" == "$want" ]]; }
    venv_ok && return 0
    lock
    venv_ok && return 0

    local t0; t0=$(date +%s)
    local log="$LOG_DIR/venv.log"
    : >"$log"
    say "venv: creating $MEDQUANT_VENV from ${REQUIREMENTS#"$MEDQUANT_ROOT"/}"
    # The stamp is written last: an interrupted run leaves no stamp, and the
    # next run starts again from an empty folder.
    rm -rf "$MEDQUANT_VENV"
    run "$log" "$PYTHON" -m venv "$MEDQUANT_VENV"
    run "$log" "$MEDQUANT_VENV/bin/python" -m pip install --disable-pip-version-check \
        --no-input -q -r "$REQUIREMENTS"
    echo "$want" >"$VENV_STAMP"
    say "venv: done in $(elapsed "$t0")"
    DID_WORK=1
}

# ---------------------------------------------------------------- llama.cpp

# Built targets. llama-cli needs the server in this llama.cpp (b11312), so the
# classic one-shot CLI is llama-completion; llama-gguf (an example) is compiled
# by hand after the install.
LLAMA_TARGETS=(
    llama ggml ggml-base ggml-cpu mtmd llama-common
    llama-quantize llama-completion llama-perplexity llama-imatrix
    llama-mtmd-cli llama-tokenize
)
LLAMA_TOOLS=(llama-quantize llama-completion llama-perplexity llama-imatrix llama-mtmd-cli llama-tokenize)

# GGML_NATIVE=OFF with the x86-64-v3 (Haswell) set: runs on any AVX2 machine.
# GGML_CPU_ALL_VARIANTS would compile the CPU backend 15 times (one per x86
# level) and turn it into a dlopen()ed module that cannot be linked, so no.
# LLAMA_TOOLS_INSTALL=OFF: its install rules name every tool, built or not;
# the tools we build are copied by hand, their RUNPATH set at build time.
LLAMA_CMAKE_ARGS=(
    -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX="$MEDQUANT_LLAMA_PREFIX"
    -DCMAKE_INSTALL_LIBDIR=lib
    '-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib'
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
    -DBUILD_SHARED_LIBS=ON
    -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
    -DGGML_AVX512=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_RPC=OFF
    -DGGML_CCACHE=ON
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_LLGUIDANCE=OFF
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_TOOLS_INSTALL=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_NUMBER="$MEDQUANT_LLAMA_CPP_BUILD"
    -DLLAMA_BUILD_COMMIT="$MEDQUANT_LLAMA_CPP_COMMIT"
)

# Everything that decides what ends up in the prefix; a change rebuilds it.
# Bump "recipe" when changing the steps below without changing the args.
LLAMA_STAMP_FILE="$MEDQUANT_LLAMA_PREFIX/.medquant-stamp"
LLAMA_STAMP="recipe 2
llama-cpp-python ${MEDQUANT_LLAMA_CPP_PY_VERSION} sha256 ${MEDQUANT_LLAMA_CPP_SDIST_SHA256}
llama.cpp b${MEDQUANT_LLAMA_CPP_BUILD} ${MEDQUANT_LLAMA_CPP_COMMIT}
targets ${LLAMA_TARGETS[*]}
cmake ${LLAMA_CMAKE_ARGS[*]}"

llama_ok() { [[ -f "$LLAMA_STAMP_FILE" && "$(<"$LLAMA_STAMP_FILE")" == "$LLAMA_STAMP" ]]; }

phase_llama() {
    llama_ok && return 0
    lock
    llama_ok && return 0

    local ver="$MEDQUANT_LLAMA_CPP_PY_VERSION"
    local t0 t; t0=$(date +%s)
    local log="$LOG_DIR/llama.cpp-$MEDQUANT_LLAMA_VERSION.log"
    : >"$log"
    say "llama: building llama.cpp $MEDQUANT_LLAMA_VERSION (10-30 min cold on 2 cores; log: $log)"

    # 1. The sdist, kept in the cache and checked against its pinned sha256.
    #    (pip prepares its metadata in a build env; `--no-binary :all:` would
    #    build that env's packages from source too: 10 minutes instead of 15 s.)
    local dl="$MEDQUANT_CACHE/downloads"
    local sdist="$dl/llama_cpp_python-$ver.tar.gz"
    sha_ok() { [[ -f "$sdist" ]] && [[ "$(sha256sum "$sdist" | cut -d' ' -f1)" == "$MEDQUANT_LLAMA_CPP_SDIST_SHA256" ]]; }
    if ! sha_ok; then
        t=$(date +%s)
        rm -rf "$MEDQUANT_CACHE"/dl.*   # left by an interrupted download (we hold the lock)
        local tmpdl; tmpdl="$(mktemp -d "$MEDQUANT_CACHE/dl.XXXXXX")"
        run "$log" "$PYTHON" -m pip download --disable-pip-version-check --no-input \
            --no-binary llama-cpp-python --no-deps "llama-cpp-python==$ver" -d "$tmpdl"
        local got=("$tmpdl"/*)
        ((${#got[@]} == 1)) && [[ "${got[0]}" == *.tar.gz ]] || die "llama: unexpected download: ${got[*]}"
        mkdir -p "$dl"
        mv -f "${got[0]}" "$sdist"
        rm -rf "$tmpdl"
        sha_ok || die "llama: sha256 of $sdist is not the pinned $MEDQUANT_LLAMA_CPP_SDIST_SHA256"
        echo "# download: $(elapsed "$t")" >>"$log"
    fi

    # 2. vendor/llama.cpp from it, into a fixed path (ccache hits on a redo).
    local work="$MEDQUANT_CACHE/build/llama.cpp-$MEDQUANT_LLAMA_VERSION"
    local src="$work/src" bld="$work/build"
    rm -rf "$src"
    mkdir -p "$src"
    run "$log" tar -xzmf "$sdist" -C "$src" --strip-components=3 "llama_cpp_python-$ver/vendor/llama.cpp"
    rm -f "$src/.git"   # a submodule pointer into the sdist's absent .git
    # The sdist's CHANGELOG names the llama.cpp commit of this release; the pin
    # in env.sh must agree with it.
    local notes
    notes="$(tar -xzOf "$sdist" "llama_cpp_python-$ver/CHANGELOG.md" \
        | awk -v v="## [$ver]" '$0 == v {on=1; next} on && /^## \[/ {on=0} on')"
    [[ "$notes" == *"llama.cpp@$MEDQUANT_LLAMA_CPP_COMMIT"* ]] \
        || die "llama: CHANGELOG.md of llama-cpp-python $ver does not name llama.cpp@$MEDQUANT_LLAMA_CPP_COMMIT; fix the pin in scripts/env.sh"

    # 3. Configure and build only what we use.
    t=$(date +%s)
    rm -rf "$bld"
    run "$log" cmake -S "$src" -B "$bld" "${LLAMA_CMAKE_ARGS[@]}"
    echo "# configure: $(elapsed "$t")" >>"$log"
    t=$(date +%s)
    run "$log" cmake --build "$bld" -j "$JOBS" --target "${LLAMA_TARGETS[@]}"
    echo "# build: $(elapsed "$t")" >>"$log"

    # 4. Install into a temporary prefix; rename it into place at the end.
    local tmp="$MEDQUANT_LLAMA_PREFIX.tmp"
    rm -rf "$tmp"
    run "$log" cmake --install "$bld" --prefix "$tmp"
    local f
    mkdir -p "$tmp/bin"
    for f in "${LLAMA_TOOLS[@]}"; do
        [[ -x "$bld/bin/$f" ]] || die "llama: $f was not built (log: $log)"
        cp -p "$bld/bin/$f" "$tmp/bin/"
    done
    for f in "$bld"/bin/lib*.so*; do   # the tools' own libs (libllama-quantize-impl.so, ...)
        [[ -e "$tmp/lib/${f##*/}" ]] || cp -P -p "$f" "$tmp/lib/"
    done
    run "$log" "${CXX:-c++}" -std=c++17 -O2 -o "$tmp/bin/llama-gguf" "$src/examples/gguf/gguf.cpp" \
        -I"$tmp/include" -L"$tmp/lib" -lggml -lggml-base -pthread '-Wl,-rpath,$ORIGIN/../lib'
    # ggml's block layouts and reference quantizers (quantize_row_*_ref,
    # dequantize_row_*, exported by libggml-base) for bit-exact unit tests.
    mkdir -p "$tmp/include/ggml-internal"
    cp -p "$src/ggml/src/ggml-quants.h" "$src/ggml/src/ggml-common.h" "$tmp/include/ggml-internal/"
    # The Python converter, to make reference GGUF files (needs torch and
    # transformers: see share/llama.cpp/requirements/).
    mkdir -p "$tmp/share/llama.cpp"
    cp -pr "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$src/requirements" \
        "$src/LICENSE" "$tmp/share/llama.cpp/"
    local usage
    usage="$("$tmp/bin/llama-quantize" --help 2>&1 || true)"   # exits 1 after the usage
    [[ "$usage" == *Q4_K_S* ]] || die "llama: the installed llama-quantize does not run: ${usage:0:300}"
    printf '%s\n' "$LLAMA_STAMP" >"$tmp/.medquant-stamp"
    rm -rf "$MEDQUANT_LLAMA_PREFIX.old"
    [[ ! -e "$MEDQUANT_LLAMA_PREFIX" ]] || mv "$MEDQUANT_LLAMA_PREFIX" "$MEDQUANT_LLAMA_PREFIX.old"
    mv "$tmp" "$MEDQUANT_LLAMA_PREFIX"
    rm -rf "$MEDQUANT_LLAMA_PREFIX.old"
    rm -rf "$work"   # the objects stay in ccache, the sources in the sdist
    say "llama: installed $MEDQUANT_LLAMA_PREFIX in $(elapsed "$t0")"
    DID_WORK=1
}

# ---------------------------------------------------------------- main

skipped apt || phase_apt
skipped venv || phase_venv
skipped llama || phase_llama
((DID_WORK)) || say "up to date (llama.cpp $MEDQUANT_LLAMA_VERSION, venv, apt)"
