#!/usr/bin/env bash
# The execution environment of execution-environment/ (docs/execution-environment.md).
#
#   scripts/ee.sh context [DIR]   build the collection tarball and the ansible-builder context
#                                 (default .cache/ee-context): Containerfile and _build/
#   scripts/ee.sh build [TAG]     the same, then build the image with ansible-builder
#                                 (podman or docker, whichever is installed; default tag fleettrace-ee)
#
# Extra arguments after TAG go to `ansible-builder build`, e.g. --build-arg EE_BASE_IMAGE=...
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILDER=${ANSIBLE_BUILDER:-$ROOT/.venv/bin/ansible-builder}

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
  *) echo "usage: $0 context [DIR] | build [TAG] [ansible-builder build args]" >&2; exit 2 ;;
esac
