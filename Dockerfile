# syntax=docker/dockerfile:1
# Build: docker build -t fanout .
# Run:   docker run -p 8080:8080 -e FANOUT_API_TOKEN=change-me fanout
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked && strip target/release/fanout

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/fanout --create-home fanout \
    && mkdir -p /var/lib/fanout/files /var/lib/fanout/data \
    && chown fanout /var/lib/fanout/files /var/lib/fanout/data
COPY --from=build /src/target/release/fanout /usr/local/bin/fanout
USER fanout
WORKDIR /var/lib/fanout
# Inside a container the listener must face the network; set FANOUT_API_TOKEN with it.
ENV FANOUT_LISTEN=0.0.0.0:8080 \
    FANOUT_FILES_ROOT=/var/lib/fanout/files \
    FANOUT_DATABASE_URL=sqlite:///var/lib/fanout/data/fanout.db \
    FANOUT_LOG_FORMAT=json
VOLUME ["/var/lib/fanout/data"]
EXPOSE 8080
ENTRYPOINT ["fanout"]
CMD ["serve"]
