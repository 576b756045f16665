#!/usr/bin/env bash
# Make a container engine available on a Debian machine without Docker: podman (with runc,
# buildah for image builds, podman-compose) and debootstrap (for the base image, make-base.sh).
# Needs root and apt-get; prints why and exits 1 when the machine does not allow it.
#
# What podman 4.3 needs on hosts like the CI machines (a kernel with hybrid cgroups, no
# systemd): the runc runtime (crun fails there), the cgroupfs manager, file events, and
# container ulimits no higher than the host's (podman's defaults are refused). They are
# written to /etc/containers/containers.conf only when that file does not exist yet.
set -euo pipefail

if command -v podman >/dev/null && command -v podman-compose >/dev/null \
    && command -v debootstrap >/dev/null && command -v runc >/dev/null; then
  have=1
else
  have=0
fi
if [ "$have" = 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-podman: podman is not installed and this is not a root Debian machine:" \
      "install podman, runc, buildah, podman-compose and debootstrap yourself" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq podman runc buildah podman-compose debootstrap uidmap \
    slirp4netns >/dev/null
fi

conf=/etc/containers/containers.conf
if [ ! -e "$conf" ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /etc/containers
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=32768
  [ "$nproc" -gt 32768 ] && nproc=32768
  cat > "$conf" <<CONF
# Written by Launchdeck's deploy/images/setup-podman.sh (see there why).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
podman --version
podman run --rm --net=none scratch 2>/dev/null || true  # storage initialised
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}'
