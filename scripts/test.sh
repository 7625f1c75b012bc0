#!/usr/bin/env bash
# The one test command: starts what the tests need, checks formatting and lints, runs every
# test of the workspace (mesh-records and the mesh-bench load tool: unit, integration over real
# WebSockets, real Redis / PostgreSQL / SQLite, the JS client and the demo in headless
# Chromium), builds the fuzz targets and replays their seeds, then prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?
# The fuzz targets (fuzz/, a workspace of their own) on the stable toolchain: libfuzzer-sys
# builds without sanitizers or nightly flags (it needs a C++ compiler), so each target is
# linted, built and run once over its committed seeds (fuzz/seeds/<target>). A target that
# stops compiling, or a seed that now panics, fails here; fuzzing proper is scripts/fuzz.sh.
fuzz_target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
{
  cargo fmt --manifest-path fuzz/Cargo.toml --check &&
  cargo clippy --manifest-path fuzz/Cargo.toml --target-dir "$fuzz_target_dir" --all-targets \
    -- -D warnings &&
  cargo build --manifest-path fuzz/Cargo.toml --target-dir "$fuzz_target_dir" &&
  for target in frames patch config; do
    mkdir -p "fuzz/artifacts/$target"
    "$fuzz_target_dir/debug/$target" -runs=0 -artifact_prefix="fuzz/artifacts/$target/" \
      "fuzz/seeds/$target" || exit 1
  done
} 2>&1 | tee -a "$log" || status=$?
# The JavaScript client and the demo page in two headless Chromium pages, against the server
# binary just built.
MESH_RECORDS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/mesh-records" bash scripts/js-test.sh 2>&1 \
  | tee -a "$log" || status=$?

# Sum cargo's "test result:" lines and node's "# pass N" / "# fail N" lines.
read -r passed failed < <(awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^# pass / { p += $3 }
  /^# fail / { f += $3 }
  END { print p + 0, f + 0 }' "$log")
echo
echo "total: $passed passed, $failed failed"
exit "$status"
