# browsergrid: `make run` starts a demo grid, `make test` runs every test.
# Both install what this machine is missing (the wasm target, wasm-bindgen-cli
# at the version in Cargo.lock, Chromium for the browser tests).

SHELL := /bin/bash
CARGO ?= cargo
GRID_ADDR ?= 127.0.0.1:8080
GRID_DATA ?= ./grid-data

.PHONY: all build wasm examples run test bench fuzz lint clean

all: build

## build: the release binary target/release/grid, the browser worker in www/pkg and the example kernels in examples/build
build: wasm examples
	$(CARGO) build --release -p grid-cli --bin grid

## wasm: compile the browser worker (installs the wasm target and wasm-bindgen-cli if missing)
wasm:
	scripts/build-wasm.sh

## examples: build the example kernels into examples/build (installs wasm32-wasip1 and clang for WASI)
examples:
	scripts/build-examples.sh

## run: build, start a coordinator with two local workers, run a demo job, print the URLs
run: build
	GRID_ADDR=$(GRID_ADDR) GRID_DATA=$(GRID_DATA) scripts/run-demo.sh

## test: the whole suite, unit to end-to-end, including headless Chromium and the example kernels
test: wasm examples
	scripts/install-chromium.sh
	$(CARGO) test --workspace --locked

## bench: benchmarks that report figures (never pass/fail on speed)
bench: build examples
	scripts/bench.sh

## fuzz: the preparer's differential fuzz over many more modules than make test (GRID_PREP_FUZZ_SEEDS, default 100000; GRID_PREP_FUZZ_FIRST, default 5000)
fuzz:
	GRID_PREP_FUZZ_SEEDS=$${GRID_PREP_FUZZ_SEEDS:-100000} GRID_PREP_FUZZ_FIRST=$${GRID_PREP_FUZZ_FIRST:-5000} \
		$(CARGO) test -p grid-wasm-prep --test prep --locked -- fuzz --nocapture

## lint: formatting and clippy, as CI expects them
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy -p grid-worker-wasm --target wasm32-unknown-unknown --locked -- -D warnings
	$(CARGO) clippy -p grid-wasi --target wasm32-unknown-unknown --locked -- -D warnings

clean:
	$(CARGO) clean
	rm -rf www/pkg
