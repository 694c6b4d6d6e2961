#!/usr/bin/env bash
# Fetch the browser assets the gateway serves, once, at deploy/build time:
#   DIR/ohif/   the prebuilt OHIF viewer (the `dist/` of @ohif/app), served at /viewer
#   DIR/three/  three.js: build/ (three.module.js imports ./three.core.js) and examples/jsm/
#               (GLTFLoader, OrbitControls and everything they import), served at /assets/three/
#   DIR/VERSIONS  marker: one line per component, "NAME VERSION INTEGRITY"
#
# The service itself never downloads anything; only this script does, through the ordinary npm
# client (`npm pack`, no install scripts run). Tarballs are checked against pinned sha512 integrity.
# Idempotent: a component whose marker already names the pinned version and integrity is skipped.
# Each component is unpacked into a staging folder next to its final place and renamed into place,
# so an interrupted run never leaves a half-written DIR/ohif or DIR/three behind.
#
# Usage: deploy/fetch-viewer.sh DIR        (FORCE=1 to fetch again regardless of the markers)
set -euo pipefail

OHIF_PKG="@ohif/app"
OHIF_VERSION="3.12.10"
OHIF_INTEGRITY="sha512-0kuF66Mq9c9dMD++bUsTjMrJpXJwaZhz9B4uS244DawAjSkTwIYFU93pxPuRUQixaRi7QAHlF3Fe1qudBlZrmA=="
THREE_PKG="three"
THREE_VERSION="0.187.0"
THREE_INTEGRITY="sha512-Qiu7R+Cmh8CstZsY1uJOSWnVlfo7ZtNLV7mF8Jltk3LB3AtDu9cRZlcnRKkAk8Y4z6KKw35z7Y7Urd7jWY8etA=="

usage() { echo "usage: $0 DIR" >&2; exit 2; }
[[ $# -eq 1 && -n "$1" ]] || usage
DIR="$1"

for tool in npm node tar; do
  command -v "$tool" >/dev/null || { echo "fetch-viewer: '$tool' is required" >&2; exit 1; }
done

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
STAGE="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

# sha512 of a file in npm's integrity format ("sha512-" + base64).
integrity_of() {
  node -e 'const c=require("crypto"),f=require("fs");
    process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

# marker_line NAME VERSION INTEGRITY
marker_line() { printf '%s %s %s\n' "$1" "$2" "$3"; }

# is_current DEST NAME VERSION INTEGRITY: the component's own marker matches the pin.
is_current() {
  local dest="$1" line
  line="$(marker_line "$2" "$3" "$4")"
  [[ "${FORCE:-0}" != "1" && -f "$dest/.liverseg-version" && "$(cat "$dest/.liverseg-version")" == "${line%$'\n'}" ]]
}

# pack NAME VERSION INTEGRITY -> prints the path of the unpacked "package" folder
pack() {
  local name="$1" version="$2" want="$3" work tgz got
  work="$(mktemp -d "$STAGE/pack.XXXXXX")"
  # --ignore-scripts: never run lifecycle scripts; npm pack of a registry spec only fetches the tarball.
  tgz="$(cd "$work" && npm pack "$name@$version" --ignore-scripts --silent --pack-destination "$work" 2>/dev/null | tail -n 1)"
  [[ -n "$tgz" && -f "$work/$tgz" ]] || { echo "fetch-viewer: npm pack $name@$version failed" >&2; exit 1; }
  got="$(integrity_of "$work/$tgz")"
  if [[ "$got" != "$want" ]]; then
    echo "fetch-viewer: integrity mismatch for $name@$version: got $got, want $want" >&2
    exit 1
  fi
  tar -xzf "$work/$tgz" -C "$work" --no-same-owner
  rm -f "$work/$tgz"
  printf '%s\n' "$work/package"
}

# install_dir SRC DEST: rename SRC into place as DEST, replacing an older DEST.
install_dir() {
  local src="$1" dest="$2"
  if [[ -e "$dest" ]]; then
    mv "$dest" "$STAGE/old.$(basename "$dest")"
  fi
  mv "$src" "$dest"
}

fetched=()

# ---- OHIF viewer -------------------------------------------------------------------------------
if is_current "$DIR/ohif" "$OHIF_PKG" "$OHIF_VERSION" "$OHIF_INTEGRITY"; then
  echo "fetch-viewer: $OHIF_PKG@$OHIF_VERSION already in $DIR/ohif"
else
  echo "fetch-viewer: fetching $OHIF_PKG@$OHIF_VERSION"
  pkg="$(pack "$OHIF_PKG" "$OHIF_VERSION" "$OHIF_INTEGRITY")"
  [[ -f "$pkg/dist/index.html" && -f "$pkg/dist/app-config.js" ]] || {
    echo "fetch-viewer: $OHIF_PKG@$OHIF_VERSION has no dist/index.html" >&2; exit 1; }
  cp "$pkg/LICENSE" "$pkg/dist/LICENSE.ohif" 2>/dev/null || true
  # The gateway serves its own generated app-config.js; keep OHIF's demo one only for reference.
  mv "$pkg/dist/app-config.js" "$pkg/dist/app-config.dist.js"
  marker_line "$OHIF_PKG" "$OHIF_VERSION" "$OHIF_INTEGRITY" > "$pkg/dist/.liverseg-version"
  install_dir "$pkg/dist" "$DIR/ohif"
  fetched+=("$OHIF_PKG@$OHIF_VERSION")
fi

# ---- three.js ----------------------------------------------------------------------------------
if is_current "$DIR/three" "$THREE_PKG" "$THREE_VERSION" "$THREE_INTEGRITY"; then
  echo "fetch-viewer: $THREE_PKG@$THREE_VERSION already in $DIR/three"
else
  echo "fetch-viewer: fetching $THREE_PKG@$THREE_VERSION"
  pkg="$(pack "$THREE_PKG" "$THREE_VERSION" "$THREE_INTEGRITY")"
  out="$STAGE/three"
  mkdir -p "$out/build" "$out/examples"
  # three.module.js imports ./three.core.js; keep the ES module builds only.
  for f in three.module.js three.core.js three.module.min.js three.core.min.js; do
    [[ -f "$pkg/build/$f" ]] && cp "$pkg/build/$f" "$out/build/"
  done
  cp -R "$pkg/examples/jsm" "$out/examples/jsm"
  cp "$pkg/LICENSE" "$out/LICENSE"
  for f in build/three.module.js build/three.core.js examples/jsm/loaders/GLTFLoader.js \
           examples/jsm/controls/OrbitControls.js examples/jsm/utils/BufferGeometryUtils.js \
           examples/jsm/utils/SkeletonUtils.js; do
    [[ -f "$out/$f" ]] || { echo "fetch-viewer: $THREE_PKG@$THREE_VERSION lacks $f" >&2; exit 1; }
  done
  marker_line "$THREE_PKG" "$THREE_VERSION" "$THREE_INTEGRITY" > "$out/.liverseg-version"
  install_dir "$out" "$DIR/three"
  fetched+=("$THREE_PKG@$THREE_VERSION")
fi

# ---- top-level marker --------------------------------------------------------------------------
{
  marker_line "$OHIF_PKG" "$OHIF_VERSION" "$OHIF_INTEGRITY"
  marker_line "$THREE_PKG" "$THREE_VERSION" "$THREE_INTEGRITY"
} > "$STAGE/VERSIONS"
if ! cmp -s "$STAGE/VERSIONS" "$DIR/VERSIONS" 2>/dev/null; then
  mv "$STAGE/VERSIONS" "$DIR/VERSIONS"
fi

if [[ ${#fetched[@]} -eq 0 ]]; then
  echo "fetch-viewer: up to date ($DIR/VERSIONS)"
else
  echo "fetch-viewer: fetched ${fetched[*]} into $DIR"
fi
