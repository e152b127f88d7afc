#!/usr/bin/env bash
# Build the container tier's runtime image from what ./scripts/build.sh built: a FROM
# scratch image holding target/release/oxydra-host (and the shared libraries it links),
# target/release/components, the time zone database and an unprivileged user. Built
# locally with no network; nothing is pulled from a registry.
#
#   ./scripts/build-guest-images.sh [IMAGE]      # default oxydra-runtime:local
#
# Needs a Docker engine (DOCKER_HOST, or /var/run/docker.sock) and the docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-oxydra-runtime:local}
bin=target/release/oxydra-host
components=target/release/components
[ -x "$bin" ] && [ -d "$components" ] || { echo "build-guest-images: run ./scripts/build.sh first ($bin and $components are missing)" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-guest-images: the docker CLI is missing: apt-get install docker.io" >&2; exit 1; }

ctx=target/guest-images/runtime
echo "== [1/3] rootfs: the binary, its shared libraries, the components, zoneinfo"
rm -rf "$ctx" && mkdir -p "$ctx/rootfs/oxydra/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
cp guest-images/runtime/Dockerfile "$ctx/"
cp "$bin" "$ctx/rootfs/oxydra/bin/"
cp -r "$components" "$ctx/rootfs/oxydra/components"
# The dynamic loader and every library ldd names, at the same paths.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  cp -L --parents "$lib" "$ctx/rootfs/"
done
if [ -d /usr/share/zoneinfo ]; then
  mkdir -p "$ctx/rootfs/usr/share"
  cp -rL /usr/share/zoneinfo "$ctx/rootfs/usr/share/"
fi
printf 'root:x:0:0::/:/nonexistent\noxydra:x:65532:65532::/nonexistent:/nonexistent\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\noxydra:x:65532:\n' >"$ctx/rootfs/etc/group"
chmod 1777 "$ctx/rootfs/tmp"
echo "   $(du -sh "$ctx/rootfs" | cut -f1) in $(find "$ctx/rootfs" -type f | wc -l) files"

echo "== [2/3] docker build -t $image (no network)"
# The legacy builder (Debian's engine has no buildx); its deprecation notice is dropped.
rc=0
DOCKER_BUILDKIT=0 docker build --network none -t "$image" "$ctx" >"$ctx/build.log" 2>&1 || rc=$?
grep -v 'environment-variable\.\|DEPRECATED\|legacy builder is deprecated\|BuildKit is currently disabled\|Install the buildx\|docs.docker.com/go/buildx\|^ *$' "$ctx/build.log" || true
[ "$rc" = 0 ] || { echo "build-guest-images: docker build of $image failed (exit $rc, above)" >&2; exit 1; }

echo "== [3/3] check: the image's binary runs"
docker run --rm --network none --read-only "$image" --version
echo "built $image"
