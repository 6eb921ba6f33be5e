#!/usr/bin/env bash
# AddressSanitizer + UBSan build of hftsig in build/asan/, and Python run on it.
#
#   fuzz/asan.sh build            copy the sources to build/asan/tree and build every
#                                 extension there with HFTSIG_SANITIZE (the in-place .so
#                                 files of the normal build are not touched)
#   fuzz/asan.sh python ARGS...   run $PY with the sanitizer runtime preloaded and
#                                 build/asan/tree first on the path
#
# Compiler: clang when present (its coverage instrumentation feeds atheris/libFuzzer:
# HFTSIG_SANITIZE=address,undefined,fuzzer-no-link), else gcc (address,undefined; the
# fuzzers then see Python coverage only).  PY defaults to .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
OUT=$ROOT/build/asan
TREE=$OUT/tree

compiler() {
  if [ -n "${ASAN_CC:-}" ]; then echo "$ASAN_CC"
  elif command -v clang >/dev/null 2>&1; then echo clang
  else echo gcc; fi
}

# The ASan runtime to preload: atheris' (ASan with libFuzzer inside) for a clang build
# when atheris is installed, else the compiler's own shared runtime.
runtime() {
  local cc
  cc=$(cat "$OUT/compiler" 2>/dev/null || compiler)
  if [ "$cc" = clang ]; then
    local at
    at=$("$PY" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))' 2>/dev/null || true)
    if [ -n "$at" ] && [ -f "$at" ]; then echo "$at"; return; fi
    clang -print-file-name=libclang_rt.asan-x86_64.so
  else
    gcc -print-file-name=libasan.so
  fi
}

build() {
  local cc sanitize
  cc=$(compiler)
  if [ "$cc" = clang ]; then sanitize=address,undefined,fuzzer-no-link; else sanitize=address,undefined; fi
  mkdir -p "$TREE"
  # the sources only: .so/.c files and caches of the normal build stay behind
  (git ls-files -z --cached --others --exclude-standard -- hftsig connectors fuzz setup.py pyproject.toml README.md \
     | tar --null -T - -cf -) | tar -C "$TREE" -xf -
  echo "asan build: $cc, HFTSIG_SANITIZE=$sanitize, in $TREE"
  # LDSHARED: setuptools links with the compiler Python was built with; the sanitizer
  # flags must reach the same driver that compiled
  (cd "$TREE" && CC=$cc LDSHARED="$cc -shared" HFTSIG_SANITIZE=$sanitize \
     HFTSIG_BUILD_JOBS=${HFTSIG_BUILD_JOBS:-1} "$PY" setup.py -q build_ext --inplace \
     --build-temp "$OUT/temp" >"$OUT/build.log" 2>&1) \
     || { tail -30 "$OUT/build.log"; exit 1; }
  echo "$cc" >"$OUT/compiler"
}

run_python() {
  [ -f "$OUT/compiler" ] || { echo "no asan build: run 'make asan' first" >&2; exit 2; }
  local rt
  rt=$(runtime)
  # PYTHONMALLOC=malloc: Python objects in the sanitizer's heap, so an overrun of a
  # bytes object is seen; leaks are Python's business (interned objects live forever)
  env LD_PRELOAD="$rt" PYTHONMALLOC=malloc HFTSIG_FUZZ_DATA="$ROOT/fuzz" \
    HFTSIG_FUZZ_WORK="$ROOT/build/fuzz" PYTHONPATH="$TREE${PYTHONPATH:+:$PYTHONPATH}" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1:allocator_may_return_null=0}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    "$PY" "$@"
}

case "${1:-}" in
  build) build ;;
  python) shift; cd "$TREE"; run_python "$@" ;;
  runtime) runtime ;;
  *) echo "usage: $0 build | python ARGS... | runtime" >&2; exit 2 ;;
esac
