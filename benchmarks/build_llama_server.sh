#!/usr/bin/env bash
# Build llama.cpp's `llama-server` for benchmarks/serve.py, outside the repo.
#
# The peer must run the very llama.cpp that llmkit runs, so the sources come from the
# llama-cpp-python sdist of the version installed in .venv (it vendors llama.cpp under
# vendor/llama.cpp). Everything lands in a cache directory; nothing is written into the repo.
# It also puts the extra dependencies of the other peer, `python -m llama_cpp.server`
# (llama-cpp-python's [server] extra), into $cache/llama-cpp-server-deps, so neither the repo
# nor .venv gains packages llmkit does not need; serve.py puts that folder on PYTHONPATH.
#
#     benchmarks/build_llama_server.sh          # prints the binary's path on its last line
#     LLMKIT_BENCH_CACHE=/tmp/bench benchmarks/build_llama_server.sh
#
# Idempotent: when the binary exists it only prints the path. ~11 min on 2 cores the first time.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
cache="$(realpath -m "${LLMKIT_BENCH_CACHE:-$HOME/.cache/llmkit-bench}")"
jobs="${JOBS:-2}"

version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
src="$cache/llama_cpp_python-$version"
build="$src/build-server"
bin="$build/bin/llama-server"

case "$cache/" in "$repo"/*) echo "LLMKIT_BENCH_CACHE must lie outside the repo ($repo)" >&2; exit 2;; esac

mkdir -p "$cache"
deps="$cache/llama-cpp-server-deps"
if [[ ! -d "$deps/sse_starlette" ]]; then
    # --no-deps: fastapi, uvicorn, starlette and pydantic already come with llmkit; a second copy
    # in front of them on PYTHONPATH would shadow .venv's. Bounds from llama-cpp-python's extra.
    "$python" -m pip install -q --no-deps --target "$deps" "sse-starlette>=1.6.1" \
        "starlette-context>=0.3.6,<0.4" "pydantic-settings>=2.0.1" python-dotenv >&2
fi

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

sdist="$cache/llama_cpp_python-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
    # --no-binary: we want the source tree, not a wheel; --no-deps: only this one package.
    "$python" -m pip download -q --no-binary :all: --no-deps -d "$cache" "llama-cpp-python==$version" >&2
fi
[[ -d "$src/vendor/llama.cpp" ]] || tar -xzf "$sdist" -C "$cache"

# Same defaults as the llama-cpp-python wheel in .venv (Release, GGML_NATIVE, OpenMP), so the
# comparison is engine against engine, not compiler flags against compiler flags. The UI and
# OpenSSL are off: the benchmark needs neither, and the UI step would try to download assets.
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
t0=$SECONDS
cmake -S "$src/vendor/llama.cpp" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$build" --target llama-server -j"$jobs" >&2
echo "built llama-server $version in $((SECONDS - t0)) s" >&2
echo "$bin"
