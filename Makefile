# petrel: `make run` sets everything up and boots the example VM;
# `make test` runs every check and test. Both as root on Debian bookworm.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
EXAMPLE ?= resources/examples/vmi-guestkit.yaml

.PHONY: setup build run run-plain test lint unit integration bench image fuzz

setup:
	resources/scripts/setup.sh

build:
	$(CARGO) build --locked -p vmm

run: setup build
	resources/scripts/run-example.sh

# The example without networking, straight on the host.
run-plain: setup build
	target/debug/petrel run $(EXAMPLE)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	# The device crate sees only the backend contract: no pod-plumbing crates.
	! $(CARGO) tree --locked -p devices -e normal --prefix none | grep -E '^(dhcproto|netlink|serde_json)'

test: setup lint build
	$(CARGO) test --locked --workspace --all-targets --no-fail-fast -- --test-threads=2

# The OCI image (localhost/petrel:latest, or PETREL_IMAGE): petrel (release),
# nft and their libraries on FROM scratch, built offline with podman.
image:
	resources/scripts/build-image.sh

bench: setup
	$(CARGO) build --locked --release -p vmm
	$(CARGO) build --locked --release -p petrel-tests --bin kvm-floor
	resources/scripts/bench-boot.sh
	resources/scripts/bench-net.sh

# Coverage-guided fuzzing (libFuzzer, nightly): each target for FUZZ_SECONDS
# (default 45 s; 7 targets). Not part of `make test`.
fuzz:
	resources/scripts/fuzz.sh
