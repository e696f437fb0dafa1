#!/bin/bash
# One-time (idempotent) host set-up for building and testing petrel on Debian
# bookworm as root: apt packages, a Rust toolchain check, and the test guest
# (kernel + initramfs, cached; a rerun takes about a second).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (KVM, tap devices and network namespaces need it)" >&2; exit 1; }
[ -c /dev/kvm ] || { echo "setup.sh: /dev/kvm is missing; petrel needs KVM" >&2; exit 1; }

PKGS=(iproute2 nftables iperf3 busybox-static qemu-system-x86 procps psmisc curl strace
	podman runc containernetworking-plugins passt)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update >/dev/null
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
	}
fi

if ! command -v cargo >/dev/null 2>&1; then
	[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
	log "no cargo: installing the stable toolchain with rustup"
	command -v curl >/dev/null || apt-get install -y --no-install-recommends curl ca-certificates >/dev/null
	curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >/dev/null
	export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo clippy --version >/dev/null 2>&1 || { command -v rustup >/dev/null && rustup component add clippy; }
cargo fmt --version >/dev/null 2>&1 || { command -v rustup >/dev/null && rustup component add rustfmt; }

log "building the test guest (cached)"
"$ROOT/resources/guest/build.sh"
