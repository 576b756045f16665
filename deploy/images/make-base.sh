#!/usr/bin/env bash
# The local base image, localhost/launchdeck-base:bookworm, for machines that cannot pull from a
# registry: Debian bookworm (debootstrap --variant=minbase) with python3, python3-venv and
# ca-certificates, plus this machine's own CA certificates (behind a TLS-inspecting proxy, pip,
# npm and apt inside builds need them). About 50 s and 180 MB the first time; the image is
# saved to $LAUNCHDECK_IMAGE_CACHE (default ~/.cache/launchdeck/images) and loaded from there
# afterwards, so it is made once per machine. Needs root (debootstrap) and podman or docker.
#   deploy/images/make-base.sh            # prints the image name
set -euo pipefail

image=${BASE_IMAGE_NAME:-localhost/launchdeck-base:bookworm}
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "make-base: neither podman nor docker is installed" >&2; exit 1; }
cache=${LAUNCHDECK_IMAGE_CACHE:-$HOME/.cache/launchdeck/images}
archive=$cache/launchdeck-base-bookworm.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if "$engine" image exists "$image" 2>/dev/null \
    || { [ "$(basename "$engine")" = docker ] && docker image inspect "$image" >/dev/null 2>&1; }; then
  echo "$image"; exit 0
fi
if [ -s "$archive" ]; then
  "$engine" load -q -i "$archive" >/dev/null && { echo "$image"; exit 0; }
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/launchdeck-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "make-base: debootstrap bookworm into $root (about a minute)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# This machine's trusted certificates (a superset of Debian's when a proxy re-signs TLS).
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -s "$bundle" ]; then
    cp "$bundle" "$root/usr/local/share/ca-certificates/launchdeck-host-bundle.crt"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    break
  fi
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
tar -C "$root" -c . | "$engine" import \
  --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
mkdir -p "$cache"
"$engine" save -q -o "$archive.tmp" "$image" && mv "$archive.tmp" "$archive"
echo "$image"
