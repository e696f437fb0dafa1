#!/usr/bin/env bash
# `make fuzz`: builds the coverage-guided fuzz targets in tests/fuzz (libFuzzer
# through libfuzzer-sys, as cargo-fuzz builds them: nightly, sanitizer coverage
# with comparison tracing, AddressSanitizer) and runs each for FUZZ_SECONDS
# (default 45) from its committed seeds plus the corpus of earlier runs
# (tests/fuzz/corpus, not committed). A crash stops the run with the target's
# name and its reproducer under tests/fuzz/artifacts/<target>/. Prints the
# executions each target reached.
#
#   FUZZ_SECONDS=60 make fuzz            # longer runs
#   FUZZ_TARGETS="dhcp spec" make fuzz   # some targets only
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECONDS=${FUZZ_SECONDS:-45}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
TARGET=x86_64-unknown-linux-gnu
ALL="virtio_net_queue_pair virtio_net_ctrl_queue virtio_pci e1000 vfio_config dhcp spec"
TARGETS=${FUZZ_TARGETS:-$ALL}

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
# What `cargo fuzz build` passes (cargo-fuzz 0.12, sanitizer=address).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cforce-frame-pointers"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
cargo +"$TOOLCHAIN" build --release --manifest-path tests/fuzz/Cargo.toml --target "$TARGET" --bins
BIN=tests/fuzz/target/$TARGET/release

printf '%-24s %12s %10s %8s\n' target executions exec/s coverage > tests/fuzz/last-run.txt
for t in $TARGETS; do
    corpus=tests/fuzz/corpus/$t
    mkdir -p "$corpus" "tests/fuzz/artifacts/$t" "tests/fuzz/seeds/$t"
    log=tests/fuzz/artifacts/$t/run.log
    echo "fuzz: $t for ${FUZZ_SECONDS}s"
    if ! "$BIN/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="tests/fuzz/artifacts/$t/" \
        "$corpus" "tests/fuzz/seeds/$t" >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t FAILED; reproducer in tests/fuzz/artifacts/$t/ (run: $BIN/$t FILE)" >&2
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-24s %12s %10s %8s\n' "$t" "$execs" "$rate" "$cov" >> tests/fuzz/last-run.txt
done
cat tests/fuzz/last-run.txt
