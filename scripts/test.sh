#!/usr/bin/env bash
# The one test command: starts what the tests need, checks formatting and lints, runs every
# test (unit, integration over real WebSockets, real Redis / PostgreSQL / SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo test --doc
