#!/usr/bin/env bash
# Builds the expansion service image (`make docker-image`) from local files only:
#   1. a Debian bookworm root filesystem with python3.11 (debootstrap; cached),
#   2. the service's third-party wheels (pip download; cached by constraints.txt),
#   3. a wheel of this checkout,
# then `docker build`. Starts dockerd if none is reachable, and stops it again if it did.
# Prints the image tag on its last line; also written to $CACHE/expansion-image.tag.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${LIVEINFERENCE_CACHE:-$HOME/.cache/liveinference}
PY=${PY:-python3}
mkdir -p "$CACHE"
log() { echo "build_image: $*" >&2; }

STARTED_DOCKERD=""
cleanup() {
  if [ -n "$STARTED_DOCKERD" ]; then
    log "stopping the dockerd this script started (pid $STARTED_DOCKERD)"
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
  fi
}
trap cleanup EXIT

if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
  log "installing Debian's docker.io"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (no bridge network: containers use the host network)"
  dockerd --bridge=none --iptables=false >"$CACHE/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see $CACHE/dockerd.log"; exit 1; }
fi

DEPS_KEY=$(cat constraints.txt expansion/container/requirements.in | sha256sum | cut -c1-12)
APP_KEY=$(cat expansion/container/Dockerfile pyproject.toml constraints.txt \
  $(find python expansion -name '*.py' -not -path '*/__pycache__/*' | sort) | sha256sum | cut -c1-12)
TAG="liveinference-expansion:$APP_KEY"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "image $TAG is up to date"
  echo "$TAG" >"$CACHE/expansion-image.tag"
  echo "$TAG"
  exit 0
fi

ROOTFS="$CACHE/rootfs-bookworm-python3.11.tar"
if [ ! -s "$ROOTFS" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  ROOT_DIR=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  log "debootstrap bookworm from $MIRROR into $ROOT_DIR (a few minutes, once)"
  debootstrap --variant=minbase --include=python3.11 \
    bookworm "$ROOT_DIR" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $CACHE/debootstrap.log"; rm -rf "$ROOT_DIR"; exit 1; }
  rm -rf "$ROOT_DIR"/var/cache/apt/archives/*.deb "$ROOT_DIR"/var/lib/apt/lists/*
  tar -C "$ROOT_DIR" -cf "$ROOTFS.tmp" . && mv "$ROOTFS.tmp" "$ROOTFS"
  rm -rf "$ROOT_DIR"
fi

DEPS="$CACHE/wheels-$DEPS_KEY"
if [ ! -f "$DEPS/requirements.txt" ]; then
  log "downloading wheels into $DEPS"
  rm -rf "$DEPS.tmp" && mkdir -p "$DEPS.tmp"
  # pip wheel, not download: the few sdists among them (crcmod) are built here, once.
  "$PY" -m pip wheel --quiet -w "$DEPS.tmp" -c constraints.txt \
    -r expansion/container/requirements.in
  cp expansion/container/requirements.in "$DEPS.tmp/requirements.txt"
  rm -rf "$DEPS" && mv "$DEPS.tmp" "$DEPS"
fi

CONTEXT="$CACHE/image-context"
rm -rf "$CONTEXT" && mkdir -p "$CONTEXT/app"
cp expansion/container/Dockerfile "$CONTEXT/"
ln "$ROOTFS" "$CONTEXT/rootfs.tar" 2>/dev/null || cp "$ROOTFS" "$CONTEXT/rootfs.tar"
cp -al "$DEPS" "$CONTEXT/deps" 2>/dev/null || cp -r "$DEPS" "$CONTEXT/deps"
# Build the wheel from a copy, so that no build/ or egg-info lands in the checkout.
SOURCE=$(mktemp -d)
cp -r pyproject.toml README.md python expansion "$SOURCE/"
find "$SOURCE" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip wheel --quiet --no-deps -w "$CONTEXT/app" "$SOURCE" >/dev/null
rm -rf "$SOURCE"
log "docker build -t $TAG"
docker build --quiet --network host -t "$TAG" -t liveinference-expansion:latest "$CONTEXT" >&2
rm -rf "$CONTEXT"
echo "$TAG" >"$CACHE/expansion-image.tag"
echo "$TAG"
