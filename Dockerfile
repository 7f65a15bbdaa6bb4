# Multi-stage build: compile citypulse (with librdkafka from source), ship a slim runtime image.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev perl && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY models ./models
COPY pipelines ./pipelines
RUN cargo build --release --locked --bin citypulse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 citypulse
COPY --from=build /src/target/release/citypulse /usr/local/bin/citypulse
COPY pipelines /etc/citypulse
USER citypulse
EXPOSE 9464
ENTRYPOINT ["citypulse"]
