# otx-relay — every task a newcomer or CI needs, one target each.
# `make run` starts the relay on 9090; `make test` runs the whole suite.

CARGO       ?= cargo
TARGET      := x86_64-unknown-linux-gnu
# A fully static glibc binary (no musl toolchain needed here). getrandom is
# told to use the getrandom(2) syscall directly: its default looks the
# function up with dlsym, which fails in a static binary, and then needs
# /dev/urandom, which an empty image does not have.
STATIC_FLAGS := -C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"
STATIC_BIN  := target/$(TARGET)/release/otx-relay
IMAGE       ?= otx-relay
FUZZ_SECONDS ?= 60

.PHONY: build release static run test lint fmt token docker docker-smoke coverage bench fuzz soak clean

build:
	$(CARGO) build --release

release: build

static:
	RUSTFLAGS='$(STATIC_FLAGS)' $(CARGO) build --release --target $(TARGET)
	@file $(STATIC_BIN)
	@ls -l $(STATIC_BIN)

# Starts the relay on 0.0.0.0:9090 with whatever SECRET_KEY etc. the
# environment holds (none: it starts and warns).
run:
	$(CARGO) run --release

test:
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# make token KEY=<your OTX API key> [LIMIT=n] [TTL=seconds], with SECRET_KEY set.
token:
	@test -n "$(KEY)" || { echo "usage: SECRET_KEY=... make token KEY=<OTX API key> [LIMIT=n] [TTL=s]" >&2; exit 2; }
	@$(CARGO) run --quiet --release -- token --key "$(KEY)" $(if $(LIMIT),--limit $(LIMIT)) $(if $(TTL),--ttl $(TTL))

docker:
	docker build -t $(IMAGE) .

docker-smoke: static
	sh .ci/docker-smoke

coverage:
	@command -v cargo-tarpaulin >/dev/null || $(CARGO) install --locked cargo-tarpaulin
	$(CARGO) tarpaulin --skip-clean --out Stdout --exclude-files 'tests/*' 'benches/*' 'fuzz/*' --follow-exec --engine llvm

bench:
	$(CARGO) bench --bench relay

fuzz:
	sh fuzz/run $(FUZZ_SECONDS)

soak:
	$(CARGO) run --release --example soak

clean:
	$(CARGO) clean
