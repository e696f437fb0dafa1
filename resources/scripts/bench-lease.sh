#!/bin/sh
# DHCP lease benchmark, petrel pod bindings vs. QEMU + udhcpd: see bench-lease.py --help.
exec python3 "$(dirname "$0")/bench-lease.py" "$@"
