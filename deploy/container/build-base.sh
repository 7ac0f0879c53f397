#!/usr/bin/env bash
# Makes the image's base without a registry: a minimal Debian bookworm root filesystem
# with Python 3.11 (what python:3.11-slim holds, from Debian's own packages) built by
# mmdebstrap from Debian's archive, imported into podman as $REGRETFLOW_BASE_IMAGE.
#   bash deploy/container/build-base.sh            # prints the image's name on the last line
#   podman build --pull=never --format docker --build-arg BASE_IMAGE=<that name> -f deploy/Dockerfile -t regretflow:latest .
# The base is rebuilt when it is older than REGRETFLOW_BASE_MAX_AGE_DAYS (default 7),
# so security updates from the archive reach the next image; 0 always rebuilds.
# Pinning: the suite (bookworm, with -updates and -security) is fixed here, and the exact
# package versions of every build are kept in the image's label
# org.regretflow.base.packages-sha256 and printed; SOURCE_DATE_EPOCH makes the tarball
# reproducible for one set of package versions. See docs/container.md.
set -euo pipefail
image=${REGRETFLOW_BASE_IMAGE:-localhost/regretflow-base:bookworm}
max_age_days=${REGRETFLOW_BASE_MAX_AGE_DAYS:-7}
mirror=${REGRETFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${REGRETFLOW_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# A host that reaches PyPI through a TLS-intercepting proxy trusts its CA from
# /usr/local/share/ca-certificates; the image build's pip needs the same trust.
# REGRETFLOW_BASE_LOCAL_CAS=0 leaves them out (an image built for elsewhere).
local_cas=${REGRETFLOW_BASE_LOCAL_CAS:-1}

if [ "$max_age_days" != "0" ] && created=$(podman image inspect --format '{{.Created.Unix}}' "$image" 2>/dev/null); then
  if [ $(( $(date +%s) - created )) -lt $(( max_age_days * 86400 )) ]; then
    echo "build-base.sh: $image is less than $max_age_days days old, kept" >&2
    echo "$image"
    exit 0
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -u -d "$(date -u +%Y-%m-%d)" +%s)}
# python3-venv brings ensurepip (the Dockerfile makes venvs); python-is-python3 gives the
# `python` the Dockerfile calls; documentation and locales are left out, as in -slim images
mmdebstrap --quiet --variant=minbase --format=tar \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package}=\${Version}\n" > "$1/etc/regretflow-base-packages.txt"' \
  --customize-hook="if [ $local_cas = 1 ] && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then cp /usr/local/share/ca-certificates/*.crt \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null 2>&1; fi" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$work/rootfs.tar" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security_mirror bookworm-security main"

packages_sha=$(tar -xOf "$work/rootfs.tar" ./etc/regretflow-base-packages.txt | sha256sum | cut -d' ' -f1)
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change 'LABEL org.regretflow.base.suite=bookworm' \
  --change "LABEL org.regretflow.base.packages-sha256=$packages_sha" \
  "$work/rootfs.tar" "$image" >/dev/null
echo "build-base.sh: $image from Debian bookworm, packages sha256 $packages_sha" >&2
echo "$image"
