#!/usr/bin/env bash
# Regenerates deploy/container/requirements.lock: every dependency of 'regretflow[confluent]'
# and of building its wheel, pinned with the sha256 of every file PyPI has for that version,
# resolved for the image's Python (3.11, Linux). Run it on Python 3.11 after changing the
# dependencies in pyproject.toml, and commit the lock:
#   bash deploy/container/lock.sh
# Only PyPI is consulted (this machine's pip configuration, local wheel folders and
# constraints, is set aside), so the lock holds nothing the image build cannot fetch.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$(mktemp -d)/pip-tools
trap 'rm -rf "$(dirname "$venv")"' EXIT
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT || true
python3.11 -m venv "$venv"
"$venv/bin/pip" install -q 'pip-tools>=7.4,<8'
CUSTOM_COMPILE_COMMAND="bash deploy/container/lock.sh" "$venv/bin/pip-compile" --quiet --strip-extras \
  --generate-hashes --allow-unsafe --no-emit-index-url --extra confluent \
  --output-file deploy/container/requirements.lock pyproject.toml deploy/container/build-requirements.in
