#!/usr/bin/env bash
# CI step after `make test`: a short fuzz run under AddressSanitizer + UBSan.
# Installs clang (apt, when root and missing) and atheris (the `fuzz` extra) through
# `make fuzz`, builds the sanitizer tree in build/asan/, runs every harness for
# FUZZ_SECONDS in all, and fails on any finding (the input is kept in fuzz/regressions/
# and printed in the log).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
status=0
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-90}" || status=$?
echo "fuzz step: $(( $(date +%s) - start )) s"
exit "$status"
