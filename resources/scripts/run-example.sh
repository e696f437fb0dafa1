#!/bin/bash
# Boots an example VM with networking the way petrel runs in a virt-launcher
# pod: a "node" namespace routes to a "pod" namespace whose eth0 has the pod
# IP (as a CNI would leave it); petrel runs inside the pod namespace and wires
# the guest with the spec's binding. The guest gets its lease, pings the node
# through petrel's NAT, prints GUEST-POWEROFF and resets; petrel exits 0.
# Everything is created here and removed on exit. Usage: run-example.sh [SPEC]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SPEC=${1:-$ROOT/resources/examples/vmi-masquerade.yaml}
PETREL=${PETREL:-$ROOT/target/debug/petrel}
GUEST=${PETREL_GUEST_DIR:-${XDG_CACHE_HOME:-/var/cache}/petrel-guest/out}
NODE=petrel-demo-node POD=petrel-demo-pod
cleanup() {
	ip netns del "$POD" 2>/dev/null || true
	ip netns del "$NODE" 2>/dev/null || true
	rm -rf "/etc/netns/$POD"
}
trap cleanup EXIT
cleanup
ip netns add "$NODE"
ip netns add "$POD"
ip -n "$NODE" link add vpod type veth peer name eth0 netns "$POD"
ip -n "$NODE" link set vpod up
ip -n "$NODE" addr add 10.244.0.1/24 dev vpod
ip -n "$POD" link set lo up
ip -n "$POD" link set eth0 up
ip -n "$POD" addr add 10.244.0.5/24 dev eth0
ip -n "$POD" route add default via 10.244.0.1
mkdir -p "/etc/netns/$POD"
printf 'nameserver 10.244.0.1\nsearch default.svc.cluster.local\n' > "/etc/netns/$POD/resolv.conf"
script='ping -c 2 10.244.0.1 && echo EXAMPLE-NETWORK-OK'
cmdline="$(cat "$GUEST/cmdline.txt") guest.cmd=$(printf '%s\n' "$script" | base64 -w0)"
echo "[run-example] petrel run $SPEC (pod namespace $POD, pod IP 10.244.0.5)" >&2
ip netns exec "$POD" "$PETREL" run "$SPEC" \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio" --cmdline "$cmdline"
