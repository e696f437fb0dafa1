#!/bin/sh
# Boot benchmark, petrel vs. QEMU microvm: see bench-boot.py --help.
exec python3 "$(dirname "$0")/bench-boot.py" "$@"
