#!/usr/bin/env bash
# The one test command: starts what the tests need, checks formatting and lints, runs every
# test of the workspace (mesh-records and the mesh-bench load tool: unit, integration over real
# WebSockets, real Redis / PostgreSQL / SQLite, the JS client and the demo in headless
# Chromium), builds the fuzz targets and replays their seeds, then prints one summary line.
#
# Everything is built first. Then the criterion benches in test mode (each bench once) run in
# the background beside all other tests, the doc tests, the fuzz seeds and the JS client and
# demo; the soak comes last, alone: it judges memory growth by the waves it manages in 40 s,
# and too few waves on a busy machine look like a leak. About 3 minutes warm on two cores,
# where one after the other took 6 to 8 (BENCHMARKS.md, "Test suite time").
# The integration tests wait on sockets and timers far more than they compute, so they run
# MESH_TEST_THREADS (default 8) at a time rather than one per core. MESH_TEST_PATIENCE scales
# every deadline in the tests (tests/common: `patience()`) on a slow or busy machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
cargo fmt --all --check
# `--features bench` everywhere: the hot-path bench needs it (it reaches the private outbox),
# and one set of features builds the crate once.
features=(--features bench)
cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

log=$(mktemp)
side_log=$(mktemp)
trap 'rm -f "$log" "$side_log"' EXIT
status=0
# The fuzz targets (fuzz/, a workspace of their own) on the stable toolchain: libfuzzer-sys
# builds without sanitizers or nightly flags (it needs a C++ compiler), so each target is
# linted, built and run once over its committed seeds (fuzz/seeds/<target>). A target that
# stops compiling, or a seed that now panics, fails here; fuzzing proper is scripts/fuzz.sh.
fuzz_target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
fuzz_build() {
  cargo fmt --manifest-path fuzz/Cargo.toml --check &&
  cargo clippy --manifest-path fuzz/Cargo.toml --target-dir "$fuzz_target_dir" --all-targets \
    -- -D warnings &&
  cargo build --manifest-path fuzz/Cargo.toml --target-dir "$fuzz_target_dir"
}
fuzz_seeds() {
  for target in frames patch config; do
    mkdir -p "fuzz/artifacts/$target"
    "$fuzz_target_dir/debug/$target" -runs=0 -artifact_prefix="fuzz/artifacts/$target/" \
      "fuzz/seeds/$target" || return 1
  done
}

# Build everything first: once built, cargo holds no lock while tests run, so the benches in
# the background and the tests beside them do not wait on each other.
cargo test --workspace --all-targets "${features[@]}" --no-run 2>&1 | tee "$log" || status=$?
fuzz_ok=1
fuzz_build 2>&1 | tee -a "$log" || { status=1; fuzz_ok=0; }

# Panics that tests provoke on purpose would otherwise each symbolize a backtrace of a
# 300 MB debug binary, seconds on a busy machine (past the tests' patience); rerun a failing
# test with RUST_BACKTRACE=1 to see where it failed.
export RUST_BACKTRACE=0
threads="${MESH_TEST_THREADS:-8}"
soak_test=connection_churn_leaves_nothing_behind

# In the background: the benches in test mode.
cargo test --workspace --bench '*' "${features[@]}" --no-fail-fast >"$side_log" 2>&1 &
side_pid=$!

# Beside them: every test target but the benches (the soak binary too, its test skipped here:
# a new test binary is never left out), the doc tests, the fuzz seeds, the JS client and the
# demo.
cargo test --workspace --lib --bins --examples --tests "${features[@]}" --no-fail-fast -- \
  --test-threads "$threads" --skip "$soak_test" 2>&1 | tee -a "$log" || status=$?
cargo test --workspace --doc "${features[@]}" 2>&1 | tee -a "$log" || status=$?
if [ "$fuzz_ok" = 1 ]; then
  fuzz_seeds 2>&1 | tee -a "$log" || status=1
fi
# The JavaScript client and the demo page in two headless Chromium pages, against the server
# binary just built.
MESH_RECORDS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/mesh-records" bash scripts/js-test.sh 2>&1 \
  | tee -a "$log" || status=$?

wait "$side_pid" || status=1
echo "--- the benches in test mode (run beside the above) ---"
tee -a "$log" <"$side_log"
# Last and alone: the soak.
cargo test --test soak "${features[@]}" --no-fail-fast 2>&1 | tee -a "$log" || status=$?

# Sum cargo's "test result:" lines and node's "# pass N" / "# fail N" lines.
read -r passed failed < <(awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^# pass / { p += $3 }
  /^# fail / { f += $3 }
  END { print p + 0, f + 0 }' "$log")
echo
echo "total: $passed passed, $failed failed"
exit "$status"
