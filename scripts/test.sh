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

# The micro_vm tier's tests: QEMU (Debian's qemu-system-x86), its vsock device
# (vhost-device-vsock from crates.io, installed once when it is not on PATH or in
# VHOST_DEVICE_VSOCK: as root into /usr/local, where the VM's unprivileged user can run
# it; else into target/tools), and the guest images built from this build.
if [ -z "${VHOST_DEVICE_VSOCK:-}" ]; then
  tools=$PWD/target/tools; [ "$(id -u)" = 0 ] && tools=/usr/local
  VHOST_DEVICE_VSOCK=$(command -v vhost-device-vsock || echo "$tools/bin/vhost-device-vsock")
  [ -x "$VHOST_DEVICE_VSOCK" ] || (unset CARGO_TARGET_DIR; cargo install --locked --quiet --root "$tools" vhost-device-vsock --version 0.3.0)
fi
export VHOST_DEVICE_VSOCK
./scripts/build-vm-images.sh

cargo test --locked --release --no-fail-fast "$@"
