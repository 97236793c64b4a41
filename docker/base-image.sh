#!/usr/bin/env bash
# Build a Debian bookworm base image from Debian's mirror (debootstrap + import), for hosts that reach the mirror
# but no image registry: `docker/base-image.sh [IMAGE]` (default localhost/mergefront-base:bookworm). Use it as
# BASE_IMAGE; docker/Dockerfile installs Python into it from the same mirror.
set -euo pipefail
image=${1:-localhost/mergefront-base:bookworm}
engine=${CONTAINER_ENGINE:-podman}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if "$engine" image exists "$image" 2>/dev/null; then
    echo "$image exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/mergefront-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$image"
echo "built $image"
