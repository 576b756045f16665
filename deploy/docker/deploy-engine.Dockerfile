# syntax=docker/dockerfile:1
# launchdeck-deploy-engine, built from the repository root:
#   docker build -f deploy/docker/deploy-engine.Dockerfile -t launchdeck/deploy-engine .
# Only this service's dependencies are installed (uv workspace member launchdeck-deploy-engine).

FROM python:3.11-slim AS build
# The same uv line as the lock file was made with (installed from PyPI).
RUN pip install --no-cache-dir 'uv>=0.13,<0.14'
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first (cached while only the source changes).
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY libs/pyproject.toml libs/
COPY cli/pyproject.toml cli/
COPY devservers/pyproject.toml devservers/
COPY services/control-api/pyproject.toml services/control-api/
COPY services/build-worker/pyproject.toml services/build-worker/
COPY services/deploy-engine/pyproject.toml services/deploy-engine/
COPY services/generator/pyproject.toml services/generator/
RUN uv sync --frozen --no-dev --no-install-workspace --package launchdeck-deploy-engine
COPY contracts contracts
COPY libs libs
COPY services/deploy-engine services/deploy-engine
RUN uv sync --frozen --no-dev --no-editable --package launchdeck-deploy-engine

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 launchdeck
# Apps run with the machine's runtimes (Node.js and npm for package.json apps; Python apps use the
# image's python3), sandboxed in bubblewrap (the container must be allowed user namespaces; else
# the engine says so at start and runs apps unsandboxed: docs/operations.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates nodejs npm bubblewrap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH LAUNCHDECK_STATE_DIR=/data LAUNCHDECK_LOG_FORMAT=json
EXPOSE 8000 8090
ENV LAUNCHDECK_EDGE_BIND=0.0.0.0 LAUNCHDECK_DEPLOY_ENGINE_HOST=0.0.0.0 \
    LAUNCHDECK_RELEASES_DIR=/data/releases
RUN mkdir -p /data && chown launchdeck /data
USER launchdeck
VOLUME /data
STOPSIGNAL SIGTERM
CMD ["launchdeck-deploy-engine"]
