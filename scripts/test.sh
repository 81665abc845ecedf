#!/usr/bin/env bash
# The project's test command (README.md, and what .ci/run runs):
# formatting, lints as errors, then every test of every crate, ending with a
# one-line total.
#
# Tests that need external tools install them here before running, and fail
# (never skip) when CI=true and an install did not work.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
{
  cargo test --workspace --doc --locked &&
  cargo test --workspace --all-targets --locked
} 2>&1 | tee "$log" || status=$?

# Sum cargo's per-binary "test result:" lines into one closing line.
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
