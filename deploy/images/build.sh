#!/usr/bin/env bash
# `make images`: the four service images (deploy/docker/<service>.Dockerfile) built with podman or
# docker, whichever is installed (CONTAINER_ENGINE overrides), on BASE_IMAGE (default the official
# python:3.11-slim; BASE_IMAGE=$(deploy/images/make-base.sh) on machines without a registry).
# Tags launchdeck/<service>:<version> (the workspace's version) and :latest, labelled with the
# version and the commit; prints each image's size and how much it adds to the base.
#   deploy/images/build.sh [image...]        # default: the four services
# `postgres` and `nats` (deploy/images/*.Dockerfile: compose.yaml's, for machines without a
# registry) are built the same way when named.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "images: neither podman nor docker is installed" \
  "(deploy/images/setup-podman.sh installs podman)" >&2; exit 1; }
base=${BASE_IMAGE:-python:3.11-slim}
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}
commit=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(control-api build-worker deploy-engine generator)

# podman: keep the HEALTHCHECK (the OCI format has none) and reuse cached layers. The labels are
# given here too: buildah reuses a cached LABEL step whose build argument (COMMIT) changed.
flags=()
[ "$(basename "$engine")" = podman ] && flags=(--format docker --layers)

mb() { "$engine" image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'; }

for service in "${services[@]}"; do
  dockerfile=deploy/docker/$service.Dockerfile
  [ -f "$dockerfile" ] || dockerfile=deploy/images/$service.Dockerfile
  [ -f "$dockerfile" ] || { echo "images: no $service.Dockerfile" >&2; exit 1; }
  start=$(date +%s)
  echo "== launchdeck/$service:$version on $base"
  "$engine" build "${flags[@]}" \
    --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" --build-arg "COMMIT=$commit" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$commit" \
    -f "$dockerfile" \
    -t "launchdeck/$service:$version" -t "launchdeck/$service:latest" . >&2
  echo "   built in $(( $(date +%s) - start )) s"
done

base_mb=$(mb "$base")
printf '%-36s %9s %12s\n' image "size MB" "vs base MB"
printf '%-36s %9s %12s\n' "$base" "$base_mb" "-"
for service in "${services[@]}"; do
  size=$(mb "launchdeck/$service:$version")
  printf '%-36s %9s %12s\n' "launchdeck/$service:$version" "$size" \
    "$(awk -v a="$size" -v b="$base_mb" 'BEGIN { printf "%+.1f", a - b }')"
done
