#!/bin/bash
# virtio-net and e1000 datapath benchmark without a guest: builds the
# `netbench` binary (package `netbench`, tests/netbench/) in release mode and
# runs it as root. It measures petrel's QueuePair (called directly, and through the real
# Net device's worker threads with eventfd kicks) and the e1000 model (driven
# through its BAR 0 registers, 1 queue) against the same frames written to /
# read from a raw tap, for 64 B, 1514 B and 64 KiB TSO frames, TX and RX, 1
# and 2 queue pairs. Everything happens in a private network namespace that
# disappears with the process; the host's interfaces are never touched.
#
#   resources/scripts/bench-net.sh                     # full run, ~3 min
#   resources/scripts/bench-net.sh --seconds 2 --repeat 5 --json out.json
#   resources/scripts/bench-net.sh --passt              # the passt backend only
#   resources/scripts/bench-net.sh --help               # all options
#
# Arguments are passed to netbench. CARGO_TARGET_DIR is honoured.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

[ "$(id -u)" = 0 ] || { echo "bench-net.sh: run as root (taps and a network namespace need CAP_NET_ADMIN)" >&2; exit 1; }
[ -c /dev/net/tun ] || { echo "bench-net.sh: /dev/net/tun is missing (load the tun module)" >&2; exit 1; }
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
	export PATH="$HOME/.cargo/bin:$PATH"
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
echo "[bench-net] building netbench (release, target dir $TARGET)" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release --quiet -p netbench)

echo "[bench-net] $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2
exec "$TARGET/release/netbench" "$@"
