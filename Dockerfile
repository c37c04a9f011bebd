# syntax=docker/dockerfile:1
# otx-relay: one static binary in an empty image.
#   docker build -t otx-relay .
#   docker run -dp 9090:9090 -e SECRET_KEY=... otx-relay

# ---- build: Rust on Alpine links against musl, statically ----
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# The same flags and target for the dependency layer and the final build, or
# cargo would rebuild everything. The explicit --target (the image's own
# musl triple, so arm64 hosts work too) keeps RUSTFLAGS off build scripts and
# proc macros: built with +crt-static they fail ("cannot produce proc-macro
# for serde_derive"). getrandom: call the syscall, never /dev/urandom, which
# the final image does not have.
ENV RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
# Dependencies first, in their own layer: rebuilt only when the manifest, the
# lock file or vendor/ change. vendor/ holds the tiny_http that
# [patch.crates-io] points at. cargo refuses a manifest whose declared targets
# have no file, so each gets a stub here (tests/it/container.rs checks this
# list against Cargo.toml).
# harness/ (the test harness) is a workspace member: cargo reads its
# manifest, and a stub stands for its code, which no release build compiles.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
COPY harness/Cargo.toml ./harness/
RUN mkdir -p src tests/it benches harness/src \
 && for stub in src/main.rs tests/it/main.rs benches/relay.rs benches/capabilities.rs; do echo 'fn main() {}' > "$stub"; done \
 && touch src/lib.rs harness/src/lib.rs \
 && cargo build --release --locked --target "$(rustc -vV | sed -n 's/^host: //p')" \
 && rm -rf src
COPY src ./src
# touch: COPY keeps the files' old times; cargo must see them as newer than
# the stubs it built.
RUN touch src/main.rs src/lib.rs \
 && target="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --release --locked --target "$target" \
 && cp "target/$target/release/otx-relay" /otx-relay \
 && /otx-relay --version | grep '^otx-relay '

# ---- run: nothing but the binary ----
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="otx-relay" \
      org.opencontainers.image.description="Threat Response relay module for AlienVault OTX" \
      org.opencontainers.image.source="https://github.com/otx-relay/otx-relay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /otx-relay /otx-relay
USER 65534:65534
EXPOSE 9090
ENV PORT=9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/otx-relay", "healthcheck"]
ENTRYPOINT ["/otx-relay"]
