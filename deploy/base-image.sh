#!/usr/bin/env bash
# The base image of every Lookalike image: a minimal Debian root filesystem made with debootstrap from
# Debian's own mirror and brought in with `docker import`, because no image registry (Docker Hub
# included) is reachable from where we build. Contents: Debian's `minbase` variant, with current
# security updates, plus python3 (the services' interpreter: 3.11 on bookworm); docs, man pages,
# locales and apt's lists removed.
#
# Usage: deploy/base-image.sh [TAG]          (TAG defaults to lookalike/debian-base:bookworm)
#   DEBIAN_SUITE=bookworm  DEBIAN_MIRROR=http://deb.debian.org/debian  REBUILD=1 (make it even if TAG exists)
# Prints the image ID (sha256:...) on stdout, the only pin a local image has: an imported image has no
# registry digest until it is pushed (deploy/README.md, "Pinning the base").
# Needs root (debootstrap, chroot), debootstrap and a running docker daemon.
set -euo pipefail

tag=${1:-lookalike/debian-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ -z ${REBUILD:-} ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    docker image inspect --format '{{.Id}}' "$tag"
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image.sh: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /tmp/lookalike-rootfs.XXXXXX)
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

echo "debootstrap $suite from $mirror into $root" >&2
debootstrap --variant=minbase --include=python3 "$suite" "$root" "$mirror" >&2

# Security updates: debootstrap only knows the suite itself.
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
# Keep later image layers small: apt keeps no .deb files, installs no docs, man pages or locales.
cat > "$root/etc/apt/apt.conf.d/90lookalike" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
EOF
cat > "$root/etc/dpkg/dpkg.cfg.d/90lookalike-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
mount -t proc proc "$root/proc"
chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' >&2
chroot "$root" apt-get clean
umount "$root/proc"

rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
: > "$root/etc/machine-id"  # unique per container, not baked into the image

tar --numeric-owner --xattrs -C "$root" -c . \
    | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase --include=python3 $suite $mirror" - "$tag" >&2
docker image inspect --format '{{.Id}}' "$tag"
