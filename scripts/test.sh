#!/usr/bin/env bash
# Runs Aerie's whole test suite on a fresh Debian machine: installs what the tests
# need (scripts/setup-test-env.sh), checks formatting and lints, then runs every test
# of the workspace. `.ci/run` calls exactly this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (memcached, ZooKeeper, Prometheus, Python clients)"
scripts/setup-test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --locked --no-fail-fast
    step "cargo test --doc --workspace"
    cargo test --doc --workspace --locked
else
    step "cargo test --workspace (cargo-nextest not installed)"
    cargo test --workspace --locked --no-fail-fast
fi
