#!/bin/sh
# The image's entrypoint: `regretflow "$@"`, with numba's cache made usable first.
# numba only uses a cache directory it can write to (its locator creates a temporary file
# there), so on a read-only root filesystem, or under a UID that cannot write the baked
# cache, it would recompile every kernel (or, with no writable home, refuse to start).
# Then the baked cache is copied to a writable directory ($TMPDIR, default /tmp: a tmpfs
# under `podman run --read-only`, an emptyDir in Kubernetes) and numba reads it from there.
set -eu
baked=/opt/regretflow/numba-cache
if [ "${NUMBA_CACHE_DIR:-}" = "$baked" ] && ! { [ -w "$baked" ] && [ -x "$baked" ]; }; then
  copy="${TMPDIR:-/tmp}/regretflow-numba-cache"
  if mkdir -p "$copy" 2>/dev/null && cp -R "$baked/." "$copy/"; then
    export NUMBA_CACHE_DIR="$copy"
  else
    echo "regretflow-entrypoint: $baked is read-only and ${TMPDIR:-/tmp} is not writable: numba compiles at start-up, or cannot cache at all" >&2
  fi
fi
exec regretflow "$@"
