#!/usr/bin/env bash
# Build the micro_vm tier's guest from Debian packages and what ./scripts/build.sh built.
# Nothing comes from anywhere but Debian's apt (the kernel package) and this tree:
#
# - vmlinux      Debian's linux-image kernel, decompressed: QEMU's `microvm` machine
#                boots it directly (PVH), as Firecracker does;
# - initrd.cpio  a static busybox, the drivers the guest needs (virtio-mmio, virtio-blk,
#                ext4, overlay, 9p over virtio and over a file descriptor, vsock) and guest-images/microvm/init;
# - runtime.ext4 the read-only root filesystem: target/release/oxydra-host and the
#                shared libraries it links, the bundled components, the time zone
#                database, passwd/group for the unprivileged user. No shell;
# - cache/       the components compiled by the guest's engine (the guest booted once,
#                when QEMU and vhost-device-vsock are here; VHOST_DEVICE_VSOCK names it).
#
#   ./scripts/build-vm-images.sh [OUT]      # default target/guest-images/microvm
#
# Needs: apt-get (Debian), dpkg-deb, depmod (kmod), mkfs.ext4 (e2fsprogs), cpio,
# busybox-static, python3. The kernel package is kept in OUT/kernel and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/guest-images/microvm}
bin=target/release/oxydra-host
components=target/release/components
need() { command -v "$1" >/dev/null || { echo "build-vm-images: $1 is missing: apt-get install $2" >&2; exit 1; }; }
[ -x "$bin" ] && [ -d "$components" ] || { echo "build-vm-images: run ./scripts/build.sh first ($bin and $components are missing)" >&2; exit 1; }
need dpkg-deb dpkg; need depmod kmod; need mkfs.ext4 e2fsprogs; need cpio cpio; need python3 python3
busybox=$(command -v busybox || true)
grep -q 'not a dynamic executable\|statically linked' <<<"$( [ -n "$busybox" ] && ldd "$busybox" 2>&1 || true)" || {
  echo "build-vm-images: the guest's initramfs needs a static busybox: apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$out/kernel"
out=$(cd "$out" && pwd)

echo "== [1/5] kernel: Debian's linux-image package, decompressed"
pkg=${OXYDRA_VM_KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$pkg" ] || { echo "build-vm-images: apt knows no linux-image-amd64: run apt-get update (or set OXYDRA_VM_KERNEL_PACKAGE)" >&2; exit 1; }
if ! ls "$out/kernel/${pkg}_"*.deb >/dev/null 2>&1; then
  rm -f "$out/kernel/"*.deb
  (cd "$out/kernel" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed as root' || true)
  ls "$out/kernel/${pkg}_"*.deb >/dev/null 2>&1 || { echo "build-vm-images: apt-get download $pkg failed" >&2; exit 1; }
fi
deb=$(ls "$out/kernel/${pkg}_"*.deb | head -1)
kx=$out/kernel/x
rm -rf "$kx" && dpkg-deb -x "$deb" "$kx"
# Modules in /lib/modules (bookworm) or /usr/lib/modules (merged-/usr packages).
base=$kx; [ -d "$base/lib/modules" ] || base=$kx/usr
[ -d "$base/lib/modules" ] || { echo "build-vm-images: $deb has no lib/modules or usr/lib/modules" >&2; exit 1; }
ver=$(ls "$base/lib/modules" | head -1)
depmod -b "$base" "$ver"
python3 - "$kx/boot/vmlinuz-$ver" "$out/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
at = data.find(b'\xfd7zXZ\x00')
if at < 0:
    sys.exit('build-vm-images: the kernel image holds no xz stream')
elf = lzma.LZMADecompressor().decompress(data[at:])
if elf[:4] != b'\x7fELF':
    sys.exit('build-vm-images: the decompressed kernel is not an ELF image')
open(sys.argv[2], 'wb').write(elf)
PY
echo "   $pkg ($ver): vmlinux $(du -h "$out/vmlinux" | cut -f1)"

echo "== [2/5] initramfs: busybox, the guest's drivers, init"
ird=$out/initrd
rm -rf "$ird" && mkdir -p "$ird/bin" "$ird/lib/mods"
cp "$busybox" "$ird/bin/busybox"
cp guest-images/microvm/init "$ird/init"
chmod 0755 "$ird/init"
# The drivers, each after what it depends on (modules.dep, as depmod wrote it).
python3 - "$base/lib/modules/$ver" "$ird/lib/mods" \
  virtio_mmio virtio_blk crc32c_generic ext4 overlay 9p 9pnet_virtio 9pnet_fd vmw_vsock_virtio_transport <<'PY'
import os, shutil, sys
root, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
deps, by_name = {}, {}
for line in open(os.path.join(root, 'modules.dep')):
    mod, _, rest = line.partition(':')
    deps[mod] = rest.split()
    name = os.path.basename(mod).split('.ko')[0].replace('-', '_')
    by_name[name] = mod
builtin = {os.path.basename(l.strip()).split('.ko')[0].replace('-', '_')
           for l in open(os.path.join(root, 'modules.builtin'))}
order, seen = [], set()
def visit(mod):
    if mod in seen:
        return
    seen.add(mod)
    for d in deps.get(mod, []):
        visit(d)
    order.append(mod)
for w in wanted:
    if w in by_name:
        visit(by_name[w])
    elif w not in builtin:
        sys.exit(f'build-vm-images: the kernel has no module {w}')
names = []
for mod in order:
    if mod.endswith('.xz') or mod.endswith('.zst'):
        sys.exit(f'build-vm-images: {mod} is compressed; busybox insmod loads plain .ko files')
    name = os.path.basename(mod)
    shutil.copy(os.path.join(root, mod), os.path.join(dest, name))
    names.append(name)
open(os.path.join(dest, 'order'), 'w').write('\n'.join(names) + '\n')
print('   modules: ' + ' '.join(n[:-3] for n in names))
PY
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out/initrd.cpio"
echo "   initrd.cpio $(du -h "$out/initrd.cpio" | cut -f1)"

echo "== [3/5] root filesystem: the binary, its shared libraries, the components, zoneinfo"
root=$out/rootfs
rm -rf "$root" && mkdir -p "$root/oxydra/bin" "$root/etc" "$root/tmp" "$root/run" "$root/proc" "$root/sys" "$root/dev"
cp "$bin" "$root/oxydra/bin/"
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do cp -L --parents "$lib" "$root/"; done
cp -r "$components" "$root/oxydra/components"
if [ -d /usr/share/zoneinfo ]; then mkdir -p "$root/usr/share" && cp -rL /usr/share/zoneinfo "$root/usr/share/"; fi
printf 'root:x:0:0::/:/nonexistent\noxydra:x:65532:65532::/nonexistent:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\noxydra:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
size=$(( $(du -sm "$root" | cut -f1) * 5 / 4 + 16 ))
rm -f "$out/runtime.ext4"
mkfs.ext4 -q -F -L oxydra-runtime -E root_owner=0:0 -O ^has_journal -d "$root" "$out/runtime.ext4" "${size}M" >"$out/mkfs.log" 2>&1 || {
  cat "$out/mkfs.log" >&2; echo "build-vm-images: mkfs.ext4 failed (above)" >&2; exit 1; }
echo "   runtime.ext4 ${size} MiB ($(find "$root" -type f | wc -l) files)"

echo "== [4/5] check: the guest's binary runs"
"$root/oxydra/bin/oxydra-host" --version

# The components compiled by the guest's own engine (under TCG it compiles them slowly):
# `start` copies them into a workspace's cache, so its first boot does not wait for it.
echo "== [5/5] boot the guest once to compile the components with its engine (OUT/cache)"
rm -rf "$out/cache"
vsock=${VHOST_DEVICE_VSOCK:-$(command -v vhost-device-vsock || true)}
if command -v qemu-system-x86_64 >/dev/null && [ -n "$vsock" ]; then
  t0=$(date +%s)
  "$bin" vm-warm-cache --images "$out" --vhost-device-vsock "$vsock" 2>"$out/warm.log" || {
    tail -20 "$out/warm.log" >&2; echo "build-vm-images: the guest could not compile the components (above; all of it in $out/warm.log)" >&2; exit 1; }
  grep '^precompiled' "$out/warm.log" | sed 's/^/   /'
  echo "   in $(( $(date +%s) - t0 )) s"
else
  echo "   skipped: QEMU or vhost-device-vsock is missing; each workspace's first boot compiles them instead"
fi
echo "built $out/{vmlinux,initrd.cpio,runtime.ext4,cache}"
