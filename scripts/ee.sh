#!/usr/bin/env bash
# The execution environment of execution-environment/ (docs/execution-environment.md).
#
#   scripts/ee.sh context [DIR]   build the collection tarball and the ansible-builder context
#                                 (default .cache/ee-context): Containerfile and _build/
#   scripts/ee.sh build [TAG]     the same, then build the image with ansible-builder
#                                 (podman or docker, whichever is installed; default tag fleettrace-ee)
#   scripts/ee.sh debian-base     a Debian 12 base image made here with debootstrap and podman
#                                 (localhost/fleettrace-ee-base:bookworm), for machines that reach
#                                 Debian's mirrors but no container registry
#   scripts/ee.sh build-on-debian [TAG]   build on that base: apt-get instead of dnf
#
# Extra arguments after TAG go to `ansible-builder build`, e.g. --build-arg EE_BASE_IMAGE=...
# FLEETTRACE_PODMAN_ARGS adds arguments to `podman build` (e.g. "--runtime runc --ulimit nofile=1024:1024"
# where crun cannot run in hybrid cgroups or the default ulimits exceed the machine's).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILDER=${ANSIBLE_BUILDER:-$ROOT/.venv/bin/ansible-builder}
DEBIAN_BASE=localhost/fleettrace-ee-base:bookworm

stage() {
  # A copy of execution-environment/ with the tarball in it: the checkout stays clean.
  local stage_dir=$1
  rm -rf "$stage_dir"
  mkdir -p "$stage_dir"
  cp -r execution-environment/. "$stage_dir/"
  "$ROOT/.venv/bin/ansible-galaxy" collection build --force --output-path "$stage_dir/dist" >/dev/null
  mv "$stage_dir"/dist/fleettrace-tracefs-*.tar.gz "$stage_dir/collections/fleettrace-tracefs.tar.gz"
  rm -rf "$stage_dir/dist"
}

case "${1:-context}" in
  context)
    context=${2:-$ROOT/.cache/ee-context}
    stage "$ROOT/.cache/ee-stage"
    "$BUILDER" create -f "$ROOT/.cache/ee-stage/execution-environment.yml" -c "$context" --output-filename Containerfile
    ;;
  build)
    tag=${2:-fleettrace-ee}
    shift $(( $# >= 2 ? 2 : 1 ))
    stage "$ROOT/.cache/ee-stage"
    "$BUILDER" build -f "$ROOT/.cache/ee-stage/execution-environment.yml" -c "$ROOT/.cache/ee-context" \
      --output-filename Containerfile -t "$tag" "$@"
    ;;
  debian-base)
    rootfs=$(mktemp -d /var/tmp/fleettrace-ee-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    # The certificate authorities this machine added (a proxy's, say): the build downloads through the same network.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      mkdir -p "$rootfs/usr/local/share/ca-certificates"
      cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    fi
    # Debian keeps pip off its system Python (ensurepip refuses, PEP 668): the image's Python is a venv
    # of it, first on PATH, which ansible-builder's scripts then use like a system Python.
    chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      python3.11-venv ca-certificates >/dev/null && update-ca-certificates >/dev/null && python3.11 -m venv /opt/ee-python && apt-get clean'
    # pip trusts its own certificate bundle unless told to use the system's (which has the CAs added above).
    tar -C "$rootfs" -c . | podman import --change "ENV PATH=/opt/ee-python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - "$DEBIAN_BASE" >/dev/null
    echo "ee: $DEBIAN_BASE"
    ;;
  build-on-debian)
    tag=${2:-fleettrace-ee}
    stage "$ROOT/.cache/ee-stage"
    # The base image's venv Python (debian-base); apt-get takes dnf's place.
    "$BUILDER" build -f "$ROOT/.cache/ee-stage/execution-environment.yml" -c "$ROOT/.cache/ee-context" \
      --output-filename Containerfile -t "$tag" --container-runtime podman \
      --build-arg EE_BASE_IMAGE="$DEBIAN_BASE" --build-arg PKGMGR=/usr/bin/apt-get \
      --build-arg PYPKG=python3.11-venv --build-arg PYCMD=/opt/ee-python/bin/python3 --extra-build-cli-args="--network=host ${FLEETTRACE_PODMAN_ARGS:-}" -v 2
    ;;
  *) echo "usage: $0 context [DIR] | build [TAG] [ansible-builder build args] | debian-base | build-on-debian [TAG]" >&2
     exit 2 ;;
esac
