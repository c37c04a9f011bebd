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

.PHONY: build release install static run demo test lint fmt token docker docker-smoke coverage bench fuzz soak vendor-check clean

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

# The relay at work with nothing to set up and no internet: the release
# relay against the harness's synthetic OTX (`fake-otx --demo`, on
# 127.0.0.1), both on free ports; one /observe and one tile's data, printed
# (pretty when python3 is there), then the relay's log. Needs curl. The
# relay gets only the variables set here (`env -i`) and curl no proxy, so an
# exported HTTP_PROXY or REDIS_URL cannot take the demo off this machine.
# Both processes are stopped on exit. tests/it/smoke.rs runs the same
# sequence against the same synthetic OTX, so that this stays true. Two
# builds, not one: built together, the harness's features would change the
# relay's and rebuild it for `make run`.
DEMO_SECRET := demo-secret-of-make-demo-not-for-production
DEMO_OBSERVABLES := [{"type": "domain", "value": "malware.example.com"}]
DEMO_TILE := {"tile_id": "otx-activity-summary", "period": "last_24_hours"}
demo:
	@command -v curl >/dev/null || { echo "make demo needs curl" >&2; exit 1; }
	$(CARGO) build --release --bin otx-relay
	$(CARGO) build --release -p otx-relay-harness --bin fake-otx
	@bin=$(or $(CARGO_TARGET_DIR),target)/release; work=$$(mktemp -d); otx_pid=; relay_pid=; \
	trap 'kill $$relay_pid $$otx_pid 2>/dev/null; rm -rf "$$work"' EXIT; trap 'exit 130' HUP INT PIPE TERM; \
	pretty() { if command -v python3 >/dev/null; then python3 -m json.tool; else cat; echo; fi; }; \
	$$bin/fake-otx --demo >"$$work/otx" & otx_pid=$$!; \
	for i in $$(seq 50); do [ -s "$$work/otx" ] && break; sleep 0.1; done; \
	otx=$$(head -n 1 "$$work/otx"); port=$$($$bin/fake-otx --free-port); \
	[ -n "$$otx" ] || { echo "fake-otx did not start" >&2; exit 1; }; \
	echo "== fake OTX on 127.0.0.1:$$otx, the relay on 127.0.0.1:$$port"; \
	env -i AVOTX_URL=http://127.0.0.1:$$otx SECRET_KEY='$(DEMO_SECRET)' HOST=127.0.0.1 PORT=$$port \
	  $$bin/otx-relay >"$$work/relay.log" 2>&1 & relay_pid=$$!; \
	up() { curl -sf --noproxy '*' -H 'Health-Check: ok' http://127.0.0.1:$$port/watchdog >/dev/null; }; \
	for i in $$(seq 100); do up && break; sleep 0.1; done; \
	up || { echo "the relay did not answer /watchdog; its log:" >&2; cat "$$work/relay.log" >&2; exit 1; }; \
	token=$$(env -i SECRET_KEY='$(DEMO_SECRET)' $$bin/otx-relay token --key demo) || exit 1; \
	echo '== POST /observe/observables $(DEMO_OBSERVABLES)'; \
	curl -sS --noproxy '*' -X POST http://127.0.0.1:$$port/observe/observables -H "Authorization: Bearer $$token" \
	  -H 'Content-Type: application/json' -d '$(DEMO_OBSERVABLES)' | pretty; \
	echo '== POST /tiles/tile-data $(DEMO_TILE)'; \
	curl -sS --noproxy '*' -X POST http://127.0.0.1:$$port/tiles/tile-data -H "Authorization: Bearer $$token" \
	  -H 'Content-Type: application/json' -d '$(DEMO_TILE)' | pretty; \
	echo "== the relay's log"; cat "$$work/relay.log"

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
