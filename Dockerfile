# syntax=docker/dockerfile:1
# Build: docker build -t fanout .
# Run:   docker run -p 8080:8080 -e FANOUT_API_TOKEN=change-me -v fanout-data:/var/lib/fanout/data fanout
# A listener on 0.0.0.0 inside a container refuses to start without FANOUT_API_TOKEN (or
# FANOUT_API_TOKEN_FILE).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY ui ./ui
# The migrations and the page (ui/) are embedded in the binary (sqlx::migrate!, include_str!):
# the runtime image needs no files. .ci/docker-context.sh builds from exactly these COPY lines.
RUN cargo build --release --locked && strip target/release/fanout

FROM debian:bookworm-slim
# ca-certificates only (for HTTPS jobs); its version follows the bookworm point release, as the
# base image's does, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fanout \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fanout --create-home fanout \
    && mkdir -p /var/lib/fanout/files /var/lib/fanout/data \
    && chown 10001:10001 /var/lib/fanout/files /var/lib/fanout/data
COPY --from=build /src/target/release/fanout /usr/local/bin/fanout
USER 10001:10001
WORKDIR /var/lib/fanout
ENV FANOUT_LISTEN=0.0.0.0:8080 \
    FANOUT_FILES_ROOT=/var/lib/fanout/files \
    FANOUT_DATABASE_URL=sqlite:///var/lib/fanout/data/fanout.db \
    FANOUT_LOG_FORMAT=json
VOLUME ["/var/lib/fanout/data"]
EXPOSE 8080
# No curl in the image: the binary probes its own /healthz (on loopback, FANOUT_LISTEN's port).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["fanout", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fanout"]
CMD ["serve"]
