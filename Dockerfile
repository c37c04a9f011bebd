# syntax=docker/dockerfile:1
# otx-relay: one static binary in an empty image.
#   docker build -t otx-relay .
#   docker run -dp 9090:9090 -e SECRET_KEY=... otx-relay

# ---- build: Rust on Alpine links against musl, statically, by default ----
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# The same flags for the dependency layer and the final build, or cargo
# would rebuild everything. getrandom: call the syscall, never /dev/urandom.
ENV RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
# Dependencies first, in their own layer: rebuilt only when Cargo.* change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
# touch: make cargo see the real sources as newer than the stub build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/otx-relay /otx-relay \
 && /otx-relay --version

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
