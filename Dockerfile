# syntax=docker/dockerfile:1
# Multi-stage build: compile citypulse (librdkafka is built from source by rdkafka-sys), then
# ship only the binary on a slim runtime image. Used by docker-compose.yml (`build: .`).
# The build context should exclude target/ (a .dockerignore with `target`), or `docker build`
# sends gigabytes of build output to the daemon.

FROM rust:1.95-bookworm AS build
# librdkafka's build needs a C toolchain, make, perl (mklove), pkg-config and zlib headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev perl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY models ./models
COPY pipelines ./pipelines
# Cache mounts keep the crate downloads and compiled dependencies between builds; the binary
# is copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin citypulse \
    && install -m 0755 target/release/citypulse /usr/local/bin/citypulse

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home citypulse
COPY --from=build /usr/local/bin/citypulse /usr/local/bin/citypulse
# The reference pipeline files; docker-compose.yml mounts its own city.toml over this copy.
COPY pipelines /etc/citypulse
USER citypulse
# The dispatch console, /metrics, /healthz and /readyz.
EXPOSE 9464
# SIGTERM drains and commits (within pipeline.shutdown_timeout_secs); compose waits 40 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["citypulse"]
CMD ["run", "--pipeline", "/etc/citypulse/city.toml"]
