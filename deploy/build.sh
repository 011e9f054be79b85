#!/usr/bin/env bash
# Builds the images from deploy/Dockerfile: lookalike/encoder:TAG and lookalike/search:TAG, and with
# --gpu lookalike/encoder-gpu:TAG. Makes the base image first when it is missing (deploy/base-image.sh).
#
# Usage: deploy/build.sh [--gpu] [--gpu-only] [--tag TAG]        (TAG defaults to dev)
# Environment:
#   LOOKALIKE_BASE_IMAGE        the base's tag (lookalike/debian-base:bookworm)
#   LOOKALIKE_BUILD_CA_BUNDLE   CA bundle that pip trusts inside the build; default: this host's,
#                               /etc/ssl/certs/ca-certificates.crt, so that a network whose egress
#                               re-signs TLS works as it does on the host; empty: pip's own (certifi).
#                               Only the build stage sees it; the images do not contain it.
#   LOOKALIKE_BUILD_NETWORK     docker build's network (host: pip reaches PyPI as this host does)
#
# The context is not the repository (2+ GB with .venv and data): it is a tar of exactly the files the
# Dockerfile copies, those git tracks or would track, so no .dockerignore is needed and nothing stray
# (certificates, models, data) can reach an image.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=dev
targets=(encoder search)
while [[ $# -gt 0 ]]; do
    case $1 in
        --gpu) targets+=(encoder-gpu) ;;
        --gpu-only) targets=(encoder-gpu) ;;
        --tag) tag=$2; shift ;;
        *) echo "usage: deploy/build.sh [--gpu] [--gpu-only] [--tag TAG]" >&2; exit 2 ;;
    esac
    shift
done

base_tag=${LOOKALIKE_BASE_IMAGE:-lookalike/debian-base:bookworm}
base_id=$(deploy/base-image.sh "$base_tag")
echo "base image $base_tag = $base_id"

context=$(mktemp -d /tmp/lookalike-context.XXXXXX)
trap 'rm -rf "$context"' EXIT
# Tracked files and new files not ignored; not files deleted in the work tree.
# shellcheck disable=SC2016  # $f is the inner shell's
git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md lookalike lookalike_cli \
        server_toolkit copy_detection encoder_service search_service training deploy \
    | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
    | tar --null -T - -c | tar -x -C "$context"
ca_bundle=${LOOKALIKE_BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
if [[ -n $ca_bundle && -e $ca_bundle ]]; then
    mkdir -p "$context/deploy/.build"
    cp "$ca_bundle" "$context/deploy/.build/ca-bundle.pem"
fi

for target in "${targets[@]}"; do
    start=$(date +%s)
    tar -C "$context" -c . | DOCKER_BUILDKIT=0 docker build --force-rm --network "${LOOKALIKE_BUILD_NETWORK:-host}" \
        --file deploy/Dockerfile --build-arg "BASE_IMAGE=$base_id" --target "$target" \
        --label "org.opencontainers.image.base.name=$base_tag" --label "org.opencontainers.image.base.digest=$base_id" \
        --tag "lookalike/$target:$tag" -
    size=$(docker image inspect --format '{{.Size}}' "lookalike/$target:$tag")
    echo "built lookalike/$target:$tag in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
done
