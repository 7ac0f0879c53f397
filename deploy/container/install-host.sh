#!/usr/bin/env bash
# Installs and configures what building and running the image without Docker needs on a
# Debian host (CI runs it through tests/install-services.sh): podman, runc, mmdebstrap
# (the base image made offline from Debian's archive, see build-base.sh) and the
# containers.conf settings this kind of host needs; and systemd-analyze, which rates the
# systemd unit's sandbox in tests/deploy. Idempotent; root or sudo.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if ! command -v podman >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
   || ! command -v systemd-analyze >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  # uidmap/slirp4netns/fuse-overlayfs: podman's recommends that a rootless user needs;
  # --no-install-recommends keeps the rest (docker-compat, man pages) out
  $SUDO apt-get install -y -qq --no-install-recommends podman runc mmdebstrap uidmap slirp4netns \
    fuse-overlayfs containernetworking-plugins golang-github-containers-common systemd >/dev/null
fi

# crun (podman's default) refuses hybrid cgroup hosts like the CI machine, and podman's
# default rlimits exceed what the host grants a container: runc and explicit limits.
conf=/etc/containers/containers.conf
marker="# regretflow: deploy/container/install-host.sh"
if [ ! -e "$conf" ] || grep -qF "$marker" "$conf"; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<CONF
$marker
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
elif ! grep -q '^runtime *= *"runc"' "$conf"; then
  echo "install-host.sh: $conf exists without runtime = \"runc\"; add it and default_ulimits by hand (docs/container.md)" >&2
  exit 1
fi
command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null && command -v systemd-analyze >/dev/null
