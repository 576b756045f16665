# syntax=docker/dockerfile:1
# launchdeck-generator, built from the repository root (`make images` builds all four):
#   podman build --format docker -f deploy/docker/generator.Dockerfile -t launchdeck/generator \
#     --build-arg BASE_IMAGE=localhost/launchdeck-base:bookworm .
# Only this service's workspace member and its locked dependencies are installed (uv), as wheels.
# Both stages start from BASE_IMAGE, so the venv's python (/usr/local/bin/python3 on the
# official image, /usr/bin/python3 on the local Debian base) is the same path in both.
# (`--format docker`: the OCI image format has no HEALTHCHECK.)
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
# Trust the system's CA store (behind a TLS-inspecting proxy it holds the proxy's CA); never
# download a Python: the image's own is the one the venv must use.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system UV_SYSTEM_CERTS=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The same uv line as the lock file was made with, in a venv of its own (the local base has
# python3-venv but no pip).
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet 'uv>=0.13,<0.14'
WORKDIR /app
# Dependencies first, in a stage of their own: the final image takes them as one layer that
# stays the same (cached, and shared between image versions) while only the sources change.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY libs/pyproject.toml libs/
COPY cli/pyproject.toml cli/
COPY devservers/pyproject.toml devservers/
COPY services/control-api/pyproject.toml services/control-api/
COPY services/build-worker/pyproject.toml services/build-worker/
COPY services/deploy-engine/pyproject.toml services/deploy-engine/
COPY services/generator/pyproject.toml services/generator/
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package launchdeck-generator

# The workspace's own packages (this service, contracts, libs) as wheels, set apart for a layer
# of their own.
FROM deps AS app
COPY contracts contracts
COPY libs libs
COPY services/generator services/generator
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package launchdeck-generator \
 && mkdir /app/own && cd /app/.venv \
 && cp -a --parents lib/python3*/site-packages/launchdeck lib/python3*/site-packages/launchdeck_* \
      bin/launchdeck-* /app/own/

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 --user-group launchdeck
COPY --from=deps /app/.venv /app/.venv
COPY --from=app /app/own/ /app/.venv/
COPY deploy/images/healthcheck.py /usr/local/lib/launchdeck/healthcheck.py
ENV PATH=/app/.venv/bin:$PATH LAUNCHDECK_STATE_DIR=/data LAUNCHDECK_LOG_FORMAT=json
# /data is scratch here (no VOLUME: nothing in it outlives the container).
RUN mkdir -p /data && chown launchdeck:launchdeck /data
USER launchdeck
WORKDIR /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "/usr/local/lib/launchdeck/healthcheck.py", "nats"]
CMD ["launchdeck-generator"]
# Last, so that a new commit rebuilds no other layer.
ARG VERSION=0.0.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="launchdeck-generator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
