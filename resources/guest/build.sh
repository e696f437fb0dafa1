#!/bin/bash
# petrel test guest: tiny Linux guest (vmlinux/bzImage + uncompressed initramfs)
# for the PVM KVM host. Idempotent; a second run with nothing changed only
# checks hashes and takes seconds.
#
# Environment:
#   PETREL_GUEST_WORK  work dir (kernel tree, build objects); default ${XDG_CACHE_HOME:-/var/cache}/petrel-guest/work
#   PETREL_GUEST_DIR   output dir;                            default ${XDG_CACHE_HOME:-/var/cache}/petrel-guest/out
#   PETREL_GUEST_JOBS  make -j;                               default $(nproc)
#   PETREL_GUEST_FORCE=1  rebuild even if the cache key matches
#
# Outputs in $PETREL_GUEST_DIR:
#   vmlinux         ELF, boot this directly (PVH entry note, or the 64-bit ELF entry)
#   bzImage         same kernel, LZ4-compressed bzImage (slower to boot here)
#   initramfs.cpio  uncompressed newc cpio: busybox-static + /init
#   cmdline.txt     the kernel command line
#   kernel.config System.map  build-info.txt  SHA256SUMS
set -euo pipefail

KIT_DIR=$(cd "$(dirname "$0")" && pwd)
WORK=${PETREL_GUEST_WORK:-${XDG_CACHE_HOME:-/var/cache}/petrel-guest/work}
OUT=${PETREL_GUEST_DIR:-${XDG_CACHE_HOME:-/var/cache}/petrel-guest/out}
JOBS=${PETREL_GUEST_JOBS:-$(nproc)}
SRC_PKG=linux-source-6.12
SRC_TAR=/usr/src/$SRC_PKG.tar.xz
PKGS=(linux-source-6.12 build-essential bc flex bison libelf-dev libssl-dev
	cpio busybox-static lz4 xz-utils python3 kmod)

log() { printf '[petrel-guest %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
T0=$(date +%s)

# --- 1. packages (apt-get update only when something is missing) ----------
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		apt-get update >/dev/null
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

# --- 2. cache keys ------------------------------------------------------
src_ver=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
bb_ver=$(dpkg-query -W -f='${Version}' busybox-static)
shopt -s nullglob
PATCHES=("$KIT_DIR"/patches/*.patch)
shopt -u nullglob
# tree_key: pristine source + patches (the unpacked, patched tree);
# kernel_key: that + compiler + config fragment (the built kernel).
tree_key=$( {
	echo "src=$SRC_PKG $src_ver"
	for p in "${PATCHES[@]}"; do echo "== ${p##*/}"; cat "$p"; done
} | sha256sum | cut -c1-16)
kernel_key=$( {
	echo "tree=$tree_key gcc=$(gcc -dumpfullversion)"
	cat "$KIT_DIR/guest.config"
} | sha256sum | cut -c1-16)
initrd_key=$( {
	echo "busybox=$bb_ver"
	cat "$KIT_DIR/init"
	(cd "$KIT_DIR/rootfs" && find . -type d | LC_ALL=C sort)
	(cd "$KIT_DIR/rootfs" && find . -type f | LC_ALL=C sort | xargs cat)
	echo "applets=$(sed -n 's/^APPLETS=//p' "$0")"
} | sha256sum | cut -c1-16)
cmdline_key=$(sha256sum < "$KIT_DIR/cmdline.txt" | cut -c1-16)
all_key=$kernel_key-$initrd_key-$cmdline_key

if [ "${PETREL_GUEST_FORCE:-0}" != 1 ] && [ -r "$OUT/build-info.txt" ] &&
	grep -qx "key=$all_key" "$OUT/build-info.txt" &&
	(cd "$OUT" && sha256sum --quiet -c SHA256SUMS) 2>/dev/null; then
	log "up to date (key $all_key) in $OUT"
	exit 0
fi
mkdir -p "$WORK" "$OUT"

# --- 3. kernel ------------------------------------------------------------
KTREE=$WORK/linux-$tree_key
if [ "${PETREL_GUEST_FORCE:-0}" = 1 ] || [ "$(cat "$KTREE/.petrel-built" 2>/dev/null)" != "$kernel_key" ]; then
	if [ ! -f "$KTREE/.petrel-patched" ]; then
		# remove trees of older keys (each is ~1.5 GB)
		for d in "$WORK"/linux-*; do
			[ -d "$d" ] && [ "$d" != "$KTREE" ] && { log "removing stale $d"; rm -rf "$d"; }
		done
		rm -rf "$KTREE" "$KTREE.tmp"
		mkdir -p "$KTREE.tmp"
		log "unpacking $SRC_TAR"
		tar -xf "$SRC_TAR" -C "$KTREE.tmp" --strip-components=1
		for p in "${PATCHES[@]}"; do
			log "patch ${p##*/}"
			patch -d "$KTREE.tmp" -p1 --no-backup-if-mismatch -s < "$p"
		done
		mv "$KTREE.tmp" "$KTREE"
		touch "$KTREE/.petrel-patched"
	fi
	log "configuring (tinyconfig + guest.config)"
	make -C "$KTREE" -s tinyconfig >/dev/null
	"$KTREE/scripts/kconfig/merge_config.sh" -m -O "$KTREE" "$KTREE/.config" \
		"$KIT_DIR/guest.config" >/dev/null
	make -C "$KTREE" -s olddefconfig >/dev/null
	# every fragment line must have survived olddefconfig
	bad=0
	while IFS= read -r l; do
		case "$l" in
		CONFIG_*) grep -qxF "$l" "$KTREE/.config" || { log "config: $l not applied"; bad=1; } ;;
		"# CONFIG_"*" is not set")
			k=${l#\# }; k=${k%% *}
			grep -q "^$k=" "$KTREE/.config" && { log "config: $k still set"; bad=1; } ;;
		esac
	done < "$KIT_DIR/guest.config"
	[ $bad = 0 ] || { echo "guest.config does not apply cleanly" >&2; exit 1; }
	log "building vmlinux bzImage (make -j$JOBS)"
	make -C "$KTREE" -j"$JOBS" KBUILD_BUILD_USER=petrel KBUILD_BUILD_HOST=petrel \
		KBUILD_BUILD_TIMESTAMP="$SRC_PKG $src_ver" vmlinux bzImage > "$WORK/kernel-build.log" 2>&1 ||
		{ tail -40 "$WORK/kernel-build.log" >&2; exit 1; }
	echo "$kernel_key" > "$KTREE/.petrel-built"
else
	log "kernel up to date ($KTREE)"
fi

# --- 4. initramfs (uncompressed newc, made with the kernel's gen_init_cpio) --
GEN=$WORK/gen_init_cpio
[ -x "$GEN" ] && [ "$GEN" -nt "$KTREE/usr/gen_init_cpio.c" ] ||
	gcc -O2 -o "$GEN" "$KTREE/usr/gen_init_cpio.c"
# Applets that get a /bin symlink. Every other applet still works from the
# shell (busybox ash runs applets without a link) or as `busybox APPLET`.
# Kept short on purpose: each initramfs entry costs boot time.
APPLETS="sh ash ip ping ping6 udhcpc nc wget httpd md5sum sha256sum dd cat ls echo mount umount mkdir rm cp mv ln ps kill sleep dmesg ifconfig route uname grep sed awk head tail wc tr cut base64 hexdump seq date test printf reboot poweroff sync free df env find stat touch chmod sysctl nslookup arp time timeout hostname setsid nproc true false taskset"
spec=$WORK/initramfs.spec
{
	echo "dir /dev 0755 0 0"
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "nod /dev/null 0666 0 0 c 1 3"
	for d in /bin /proc /sys /run /tmp /etc /root; do echo "dir $d 0755 0 0"; done
	echo "slink /sbin bin 0777 0 0"
	echo "file /bin/busybox /bin/busybox 0755 0 0"
	for a in $APPLETS; do echo "slink /bin/$a busybox 0777 0 0"; done
	echo "file /init $KIT_DIR/init 0755 0 0"
	# rootfs directories below the ones made above (e.g. /etc/acpi/PWRF)
	(cd "$KIT_DIR/rootfs" && find . -mindepth 2 -type d | LC_ALL=C sort) | while read -r d; do
		echo "dir ${d#.} 0755 0 0"
	done
	(cd "$KIT_DIR/rootfs" && find . -type f | LC_ALL=C sort) | while read -r f; do
		f=${f#.}
		mode=0644; [ -x "$KIT_DIR/rootfs$f" ] && mode=0755
		echo "file $f $KIT_DIR/rootfs$f $mode 0 0"
	done
} > "$spec"
"$GEN" -t 0 "$spec" > "$WORK/initramfs.cpio.tmp"

# --- 5. outputs -------------------------------------------------------------
cp "$KTREE/vmlinux" "$OUT/vmlinux.tmp" && mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
cp "$KTREE/arch/x86/boot/bzImage" "$OUT/bzImage"
cp "$KTREE/System.map" "$OUT/System.map"
cp "$KTREE/.config" "$OUT/kernel.config"
mv "$WORK/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
grep -v '^#' "$KIT_DIR/cmdline.txt" | tr '\n' ' ' | tr -s ' ' | sed 's/ $//' > "$OUT/cmdline.txt"
echo >> "$OUT/cmdline.txt"
(cd "$OUT" && sha256sum vmlinux bzImage initramfs.cpio cmdline.txt System.map kernel.config > SHA256SUMS)
{
	echo "key=$all_key"
	echo "kernel_source=$SRC_PKG $src_ver"
	echo "kernel_release=$(cat "$KTREE/include/config/kernel.release")"
	echo "busybox=busybox-static $bb_ver"
	echo "patches=$(for p in "${PATCHES[@]}"; do printf '%s ' "${p##*/}"; done)"
	echo "vmlinux_elf_entry=$(readelf -h "$OUT/vmlinux" | awk '/Entry point/ {print $4}')"
	echo "vmlinux_pvh_entry=$(readelf -x .notes "$OUT/vmlinux" >/dev/null 2>&1; \
		python3 - "$OUT/vmlinux" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
# ELF64 program headers: find PT_NOTE segments, look for Xen note type 18
phoff, = struct.unpack_from('<Q', d, 0x20); phentsz, phnum = struct.unpack_from('<HH', d, 0x36)
for i in range(phnum):
    t, fl, off, va, pa, fsz = struct.unpack_from('<IIQQQQ', d, phoff + i * phentsz)
    if t != 4: continue
    p = off
    while p < off + fsz:
        nsz, dsz, ty = struct.unpack_from('<III', d, p)
        name = d[p + 12:p + 12 + nsz].rstrip(b'\0')
        desc = p + 12 + ((nsz + 3) & ~3)
        if name == b'Xen' and ty == 18:
            v = struct.unpack_from('<I' if dsz == 4 else '<Q', d, desc)[0]
            print(hex(v)); sys.exit(0)
        p = desc + ((dsz + 3) & ~3)
print('none')
PY
)"
	echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(uname -r)"
} > "$OUT/build-info.txt"
ls -l "$OUT" | sed 's/^/    /' >&2
log "done in $(( $(date +%s) - T0 )) s -> $OUT"
