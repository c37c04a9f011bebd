# otx-relay — every task a newcomer or CI needs, one target each.
# `make run` starts the relay on 9090; `make test` runs the whole suite.

CARGO       ?= cargo
TARGET      := x86_64-unknown-linux-gnu
# A fully static glibc binary (no musl toolchain needed here). getrandom is
# told to use the getrandom(2) syscall directly: its default looks the
# function up with dlsym, which fails in a static binary, and then needs
# /dev/urandom, which an empty image does not have.
STATIC_FLAGS := -C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"
# Its own target dir: other RUSTFLAGS would otherwise invalidate the normal
# build's cache each time, and `cargo test` (which holds target/'s lock) can
# run `make static` from inside a test without waiting on itself.
STATIC_DIR  := target/static
STATIC_BIN  := $(STATIC_DIR)/$(TARGET)/release/otx-relay
IMAGE       ?= otx-relay
FUZZ_SECONDS ?= 60

PREFIX      ?= /usr/local

.PHONY: build release install static run test lint fmt token docker docker-smoke coverage bench fuzz soak vendor-check clean

build:
	$(CARGO) build --release

release: build

# `otx-relay` on the PATH ($(PREFIX)/bin, DESTDIR for packaging), so that
# the README's commands (`otx-relay check`, `otx-relay token`…) work as
# written: the release binary of `make build`, copied.
install: build
	install -D -m 0755 target/release/otx-relay $(DESTDIR)$(PREFIX)/bin/otx-relay
	@echo "installed $(DESTDIR)$(PREFIX)/bin/otx-relay; try: otx-relay --help"

static:
	CARGO_TARGET_DIR=$(STATIC_DIR) RUSTFLAGS='$(STATIC_FLAGS)' $(CARGO) build --release --target $(TARGET)
	@file $(STATIC_BIN)
	@file $(STATIC_BIN) | grep -q 'static' || { echo "$(STATIC_BIN) is not statically linked" >&2; exit 1; }
	@if ldd $(STATIC_BIN) 2>&1 | grep -q '=>'; then echo "$(STATIC_BIN) loads shared libraries" >&2; exit 1; fi
	@ls -l $(STATIC_BIN)

# Starts the relay on 0.0.0.0:9090 with whatever SECRET_KEY etc. the
# environment holds (none: it starts and warns).
run:
	$(CARGO) run --release

# Unit tests, the integration suite (tests/it) and a short smoke run of the
# benchmark, for the relay and the test harness (harness/, a workspace
# member). Then
# the unit tests of the patched tiny_http (vendor/, not a member).
# Then the tests that skipped themselves (a tool missing), with why: cargo
# shows nothing a passing test prints, and a skipped test passes. To see
# one on purpose: `OTX_RELAY_SKIP_TOOLS=redis-server make test`.
SKIPPED := $(or $(CARGO_TARGET_DIR),target)/tmp/skipped-tests.txt
test:
	@rm -f $(SKIPPED)
	@status=0; \
	$(CARGO) test --workspace --lib --bins --tests --benches && \
	$(CARGO) test -p tiny_http --lib || status=$$?; \
	if [ -s $(SKIPPED) ]; then echo "== skipped tests (from $(SKIPPED)):"; cat $(SKIPPED); fi; \
	exit $$status

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# make token KEY=<your OTX API key> [LIMIT=n] [TTL=seconds], with SECRET_KEY set.
token:
	@test -n "$(KEY)" || { echo "usage: SECRET_KEY=... make token KEY=<OTX API key> [LIMIT=n] [TTL=s]" >&2; exit 2; }
	@$(CARGO) run --quiet --release -- token --key "$(KEY)" $(if $(LIMIT),--limit $(LIMIT)) $(if $(TTL),--ttl $(TTL))

docker:
	docker build -t $(IMAGE) .

# The runtime stage around the binary of `make static`, run against a fake
# OTX on an engine that is already up (.ci/docker-smoke says how to start one).
docker-smoke: static
	STATIC_BIN=$(STATIC_BIN) IMAGE=$(IMAGE):smoke sh .ci/docker-smoke

coverage:
	@command -v cargo-tarpaulin >/dev/null || $(CARGO) install --locked cargo-tarpaulin
	$(CARGO) tarpaulin --engine llvm --target-dir target/coverage --skip-clean --timeout 900 --out Stdout \
	  --lib --bins --tests --exclude-files 'tests/*' 'harness/*' 'benches/*' 'fuzz/*' 'vendor/*'

bench:
	$(CARGO) bench --bench relay

# Every fuzz target for FUZZ_SECONDS each (cargo-fuzz, installed if missing;
# seeds in fuzz/corpus/, what the run adds in fuzz/target/corpus/).
fuzz:
	sh fuzz/run $(FUZZ_SECONDS)

# The release relay under load against a flaky in-process fake OTX on
# 127.0.0.1, beside hostile clients: the bench's `soak` phase (SOAK_SECONDS,
# SOAK_CONCURRENCY, SOAK_HOSTILE: see benches/relay.rs); exit status 1 when
# one of its checks fails.
soak:
	BENCH_ONLY=soak $(CARGO) bench --bench relay

# vendor/tiny_http must be exactly the pristine release plus the patch series.
vendor-check:
	sh vendor/patches/apply check

clean:
	$(CARGO) clean
