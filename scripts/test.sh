#!/usr/bin/env bash
# Build everything (bundled components, host, test fixture components), then run every
# test. Tests use the real binary and real components: nothing is mocked.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh

fixtures=()
for d in tests/fixtures/components/*/ sdk/examples/*/; do fixtures+=(-p "$(basename "$d")"); done
cargo build --locked --target wasm32-wasip2 --profile wasm-release "${fixtures[@]}"

# The container tier's tests: a Docker engine, and the runtime's image built from this build.
. scripts/docker-engine.sh
docker_engine
if docker version >/dev/null 2>&1; then ./scripts/build-guest-images.sh; fi

cargo test --locked --release --no-fail-fast "$@"
