#!/usr/bin/env bash
# Chaos run (loopback only): two mesh-records instances on a private Redis, a workload of
# writes and deletes, subscribers in full and patch mode, and random faults (pub/sub cuts,
# blocked reconnects, DEBUG SLEEP, Redis restarted empty, SIGKILLed instances); then checks
# that no acknowledged write was lost, no deletion came back, every subscriber converged and
# no version went backwards. Prints one `chaos: PASS|FAIL ...` line; exit 0 only on PASS.
#
#   scripts/chaos.sh MINUTES [options for the driver, e.g. --faults debug-sleep,pubsub-kill]
#
# The driver is examples/chaos/ (main.rs and its modules) (`--help` lists its options); see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-2}
shift || true

cargo build --release --quiet --bin mesh-records --example chaos
TARGET=${CARGO_TARGET_DIR:-target}
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chaos.XXXXXX")

DRIVER=
# Whatever happens, stop the driver and every process it started (their pids are in
# $RUN_DIR/pids), by pid.
cleanup() {
    if [[ -n $DRIVER ]] && kill -0 "$DRIVER" 2>/dev/null; then
        kill "$DRIVER" 2>/dev/null || true
        wait "$DRIVER" 2>/dev/null || true
    fi
    for pidfile in "$RUN_DIR"/pids/*.pid; do
        [[ -e $pidfile ]] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    # The driver removes the run directory on PASS; on FAIL the logs stay for reading.
    if [[ ${STATUS:-1} -eq 0 ]]; then rm -rf "$RUN_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$TARGET/release/examples/chaos" --minutes "$MINUTES" \
    --binary "$TARGET/release/mesh-records" --run-dir "$RUN_DIR" "$@" &
DRIVER=$!
STATUS=0
wait "$DRIVER" || STATUS=$?
DRIVER=
exit "$STATUS"
