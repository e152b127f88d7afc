#!/usr/bin/env bash
# Build the container tier's two images from what ./scripts/build.sh built, locally, with
# no network (nothing is pulled from a registry):
#
# - the runtime image: FROM scratch, target/release/oxydra-host (and the shared libraries
#   it links), target/release/components, the time zone database, an unprivileged user;
# - the shell sidecar's image: the same binary (run as `shell-daemon`), a static busybox
#   as /bin/sh with its applets (Debian's busybox-static), the same user — no components.
#
#   ./scripts/build-guest-images.sh [RUNTIME_IMAGE [SHELL_IMAGE]]
#   # defaults oxydra-runtime:local and oxydra-shell:local
#
# Needs a Docker engine (DOCKER_HOST, or /var/run/docker.sock) and the docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-oxydra-runtime:local}
shell_image=${2:-oxydra-shell:local}
bin=target/release/oxydra-host
components=target/release/components
[ -x "$bin" ] && [ -d "$components" ] || { echo "build-guest-images: run ./scripts/build.sh first ($bin and $components are missing)" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-guest-images: the docker CLI is missing: apt-get install docker.io" >&2; exit 1; }
busybox=$(command -v busybox || true)
linkage=$( [ -n "$busybox" ] && ldd "$busybox" 2>&1 || true)
grep -q 'not a dynamic executable\|statically linked' <<<"$linkage" || {
  echo "build-guest-images: the shell image needs a static busybox: apt-get install busybox-static" >&2; exit 1; }

# rootfs DIR: the binary, the dynamic loader and every library ldd names (same paths),
# zoneinfo, passwd and group for the unprivileged user, /tmp.
rootfs() {
  local root=$1
  mkdir -p "$root/oxydra/bin" "$root/etc" "$root/tmp"
  cp "$bin" "$root/oxydra/bin/"
  ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    cp -L --parents "$lib" "$root/"
  done
  if [ -d /usr/share/zoneinfo ]; then
    mkdir -p "$root/usr/share"
    cp -rL /usr/share/zoneinfo "$root/usr/share/"
  fi
  printf 'root:x:0:0::/:/nonexistent\noxydra:x:65532:65532::/nonexistent:/nonexistent\n' >"$root/etc/passwd"
  printf 'root:x:0:\noxydra:x:65532:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
}

# build NAME IMAGE: docker build of target/guest-images/NAME, then check the binary runs.
build() {
  local ctx=target/guest-images/$1 img=$2 rc=0
  # The legacy builder (Debian's engine has no buildx); its deprecation notice is dropped.
  DOCKER_BUILDKIT=0 docker build --network none -t "$img" "$ctx" >"$ctx/build.log" 2>&1 || rc=$?
  grep -v 'environment-variable\.\|DEPRECATED\|legacy builder is deprecated\|BuildKit is currently disabled\|Install the buildx\|docs.docker.com/go/buildx\|^ *$' "$ctx/build.log" || true
  [ "$rc" = 0 ] || { echo "build-guest-images: docker build of $img failed (exit $rc, above)" >&2; exit 1; }
  docker run --rm --network none --read-only "$img" --version
}

ctx=target/guest-images/runtime
echo "== [1/4] runtime rootfs: the binary, its shared libraries, the components, zoneinfo"
rm -rf "$ctx" && mkdir -p "$ctx"
cp guest-images/runtime/Dockerfile "$ctx/"
rootfs "$ctx/rootfs"
cp -r "$components" "$ctx/rootfs/oxydra/components"
echo "   $(du -sh "$ctx/rootfs" | cut -f1) in $(find "$ctx/rootfs" -type f | wc -l) files"

echo "== [2/4] docker build -t $image (no network), and check its binary runs"
build runtime "$image"

ctx=target/guest-images/shell
echo "== [3/4] shell rootfs: the binary, its shared libraries, busybox and its applets"
rm -rf "$ctx" && mkdir -p "$ctx"
cp guest-images/shell/Dockerfile "$ctx/"
rootfs "$ctx/rootfs"
mkdir -p "$ctx/rootfs/bin"
cp "$busybox" "$ctx/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ctx/rootfs/bin/$applet"
done
echo "   $(du -sh "$ctx/rootfs" | cut -f1) in $(find "$ctx/rootfs" -type f | wc -l) files"

echo "== [4/4] docker build -t $shell_image (no network), and check its binary and shell run"
build shell "$shell_image"
docker run --rm --network none --read-only --entrypoint /bin/sh "$shell_image" -c 'echo "   /bin/sh runs: $(uname -s)"'
echo "built $image and $shell_image"
