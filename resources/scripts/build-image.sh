#!/bin/bash
# Builds the OCI image of petrel offline (no registry needed): petrel, the
# `nft` it runs (and `passt` when installed), their shared libraries as ldd
# resolves them on this Debian host, a minimal /etc, on `FROM scratch`.
#
#   resources/scripts/build-image.sh [--binary PATH] [--tag NAME]
#
# PETREL_IMAGE (default localhost/petrel:latest) names the image. The root
# is assembled in a scratch directory and removed afterwards. Prints the
# image's size on the last line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TAG=${PETREL_IMAGE:-localhost/petrel:latest}
BIN=""
while [ $# -gt 0 ]; do
	case "$1" in
	--binary) BIN=$2; shift 2 ;;
	--tag) TAG=$2; shift 2 ;;
	*) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v podman >/dev/null || { echo "build-image.sh: podman is not installed (apt-get install podman runc)" >&2; exit 1; }
if [ -z "$BIN" ]; then
	log "building petrel (release)"
	(cd "$ROOT" && cargo build --locked --release -p vmm >&2)
	BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/petrel"
fi
[ -x "$BIN" ] || { echo "build-image.sh: no petrel binary at $BIN" >&2; exit 1; }
NFT=$(command -v nft) || { echo "build-image.sh: nft is not installed (apt-get install nftables)" >&2; exit 1; }
PASST=$(command -v passt || true)

CTX=$(mktemp -d /tmp/petrel-image.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
RFS="$CTX/rootfs"
mkdir -p "$RFS"/{usr/bin,usr/sbin,etc,tmp,run,proc,sys,dev,var,etc/podinfo}
chmod 1777 "$RFS/tmp"
ln -s ../run "$RFS/var/run"
# Debian's merged /usr: the loader path in every ELF is /lib64/…
ln -s usr/lib "$RFS/lib"
ln -s usr/lib64 "$RFS/lib64"

install -m 0755 "$BIN" "$RFS/usr/bin/petrel"
strip --strip-debug "$RFS/usr/bin/petrel" 2>/dev/null || true
install -m 0755 "$NFT" "$RFS/usr/sbin/nft"
bins=("$BIN" "$NFT")
if [ -n "$PASST" ]; then
	install -m 0755 "$PASST" "$RFS/usr/bin/passt"
	bins+=("$PASST")
fi

# Every shared library ldd resolves (and the loader), at its /usr path.
for lib in $(ldd "${bins[@]}" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
	real=$(readlink -f "$lib")
	dest="$RFS/usr${lib#/usr}"
	mkdir -p "$(dirname "$dest")"
	cp -L "$real" "$dest"
done

# Users: root and KubeVirt's qemu (107), which the compute container runs as.
cat >"$RFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/nonexistent
qemu:x:107:107:qemu:/nonexistent:/nonexistent
EOF
cat >"$RFS/etc/group" <<'EOF'
root:x:0:
qemu:x:107:
EOF
printf 'hosts: files dns\n' >"$RFS/etc/nsswitch.conf"
: >"$RFS/etc/resolv.conf"
: >"$RFS/etc/hosts"

cat >"$CTX/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/usr/sbin
ENTRYPOINT ["/usr/bin/petrel"]
CMD ["--help"]
EOF

log "podman build $TAG"
# No RUN step: nothing needs a network; never podman's default network.
podman --runtime runc --cgroup-manager cgroupfs build --network none --quiet \
	-f "$CTX/Containerfile" -t "$TAG" "$CTX" >&2
size=$(podman image inspect --format '{{.Size}}' "$TAG")
log "built $TAG: $((size / 1024)) KiB"
echo "$TAG $size"
