#!/usr/bin/env bash
# Build the Docker images the tests run, offline from any image registry:
#   mldesk-test/busybox:latest  busybox-static rootfs (sh, sleep, cat, ...)
#   mldesk-test/python:latest   Debian minbase + python3-minimal + python3-numpy,
#                               `python` -> python3, made with debootstrap.
#   mldesk-test/python-oldest:latest  Debian 11 (bullseye) minbase + python3:
#                               Python 3.9, the oldest Python the agent is tested on.
# Arguments pick images (busybox, python, oldest); none: all three.
# Idempotent: an image whose org.mldesk.recipe label matches is left alone. The
# python rootfs tarball is cached in /var/cache/mldesk-test, so rebuilding a
# missing image on the same machine is a re-import (seconds, not a debootstrap).
# Overrides: MLDESK_DEBIAN_MIRROR (default: this machine's apt mirror),
#            MLDESK_TEST_SUITE (default bookworm).
set -euo pipefail

CACHE=/var/cache/mldesk-test
SUITE=${MLDESK_TEST_SUITE:-bookworm}
PY_INCLUDE=python3-minimal,python3-numpy
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BUSYBOX_TAG=mldesk-test/busybox:latest
PYTHON_TAG=mldesk-test/python:latest
OLDEST_TAG=mldesk-test/python-oldest:latest
OLDEST_SUITE=${MLDESK_TEST_OLDEST_SUITE:-bullseye}
# Bump when the recipes below change: images and cached tarballs are keyed on it.
RECIPE_VERSION=1

log() { printf '[images] %s\n' "$*"; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || { log "$CACHE/.lock still held after 900 s"; exit 1; }

recipe_of() { docker image inspect --format '{{ index .Config.Labels "org.mldesk.recipe" }}' "$1" 2>/dev/null || true; }
hash_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

workdirs=()
cleanup() {
  local d m
  for d in ${workdirs[@]+"${workdirs[@]}"}; do
    # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
    for m in $(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$d"
  done
}
trap cleanup EXIT
# Sets WORKDIR (not echoed: a $(...) subshell would lose the cleanup entry).
new_workdir() {
  WORKDIR=$(mktemp -d "$CACHE/build.XXXXXX")
  workdirs+=("$WORKDIR")
}

debian_mirror() {
  if [[ -n ${MLDESK_DEBIAN_MIRROR:-} ]]; then echo "$MLDESK_DEBIAN_MIRROR"; return; fi
  local uri=
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^[[:space:]]*URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" {u = ($2 ~ /^\[/) ? $3 : $2; if (u !~ /security/) {print u; exit}}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_busybox() {
  local recipe dir
  recipe=$(hash_of "$RECIPE_VERSION" busybox "$(sha256sum /bin/busybox | cut -d' ' -f1)")
  if [[ $(recipe_of "$BUSYBOX_TAG") == "$recipe" ]]; then
    log "$BUSYBOX_TAG: up to date"
    return
  fi
  local t0=$SECONDS
  new_workdir
  dir=$WORKDIR/rootfs
  mkdir -p "$dir"/{bin,tmp,etc,root}
  cp /bin/busybox "$dir/bin/busybox"
  # Inside the chroot, so the links point at /bin/busybox of the image.
  chroot "$dir" /bin/busybox --install -s /bin
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  tar -C "$dir" --numeric-owner -c . |
    docker import --change "ENV PATH=$STD_PATH" --change 'CMD ["/bin/sh"]' \
      --change "LABEL org.mldesk.recipe=$recipe" - "$BUSYBOX_TAG" >/dev/null
  log "$BUSYBOX_TAG: built in $((SECONDS - t0)) s"
}

# build_debian TAG SUITE INCLUDE: a debootstrapped Debian minbase image with INCLUDE.
build_debian() {
  local tag=$1 suite=$2 include=$3 name=${1#mldesk-test/}
  local recipe tarball dir mirror t0=$SECONDS
  name=${name%%:*}
  recipe=$(hash_of "$RECIPE_VERSION" python "$suite" "$include")
  if [[ $(recipe_of "$tag") == "$recipe" ]]; then
    log "$tag: up to date"
    return
  fi
  tarball=$CACHE/$name-$suite-$recipe.tar
  if [[ ! -f $tarball ]]; then
    mirror=$(debian_mirror)
    new_workdir
    dir=$WORKDIR/rootfs
    log "$tag: debootstrap $suite from $mirror (about a minute)"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$dir" "$mirror" \
      >"$CACHE/debootstrap-$name.log" 2>&1; then
      log "debootstrap failed; last lines of $CACHE/debootstrap-$name.log:"
      tail -n 30 "$CACHE/debootstrap-$name.log" >&2
      [[ -f $dir/debootstrap/debootstrap.log ]] && tail -n 30 "$dir/debootstrap/debootstrap.log" >&2
      exit 1
    fi
    ln -sf python3 "$dir/usr/bin/python"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* "$dir"/var/log/*.log
    tar -C "$dir" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    # Older recipes' tarballs are dead weight.
    find "$CACHE" -maxdepth 1 -name "$name-$suite-*.tar" ! -name "${tarball##*/}" -delete
  else
    log "$tag: importing cached $tarball"
  fi
  docker import --change "ENV PATH=$STD_PATH" --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' --change "LABEL org.mldesk.recipe=$recipe" \
    - "$tag" <"$tarball" >/dev/null
  log "$tag: built in $((SECONDS - t0)) s"
}

docker info >/dev/null 2>&1 || { log "docker does not answer: run scripts/ci/start-services.sh first"; exit 1; }
wanted=("$@")
((${#wanted[@]})) || wanted=(busybox python oldest)
for image in "${wanted[@]}"; do
  case $image in
    busybox) build_busybox ;;
    python) build_debian "$PYTHON_TAG" "$SUITE" "$PY_INCLUDE" ;;
    oldest) build_debian "$OLDEST_TAG" "$OLDEST_SUITE" python3 ;;
    *) log "unknown image '$image' (busybox, python, oldest)"; exit 2 ;;
  esac
done
