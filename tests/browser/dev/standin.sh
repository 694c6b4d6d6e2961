#!/usr/bin/env bash
# Development stand-in for the gateway's browser routes: a throwaway Orthanc (DICOMweb plugin) holding
# a CT series and liverseg's results, plus dev/server.mjs in front of it on one origin.
#
#   tests/browser/dev/standin.sh up CT_DIR RESULTS_DIR ASSETS_DIR   # prints the study UID and URLs
#   tests/browser/dev/standin.sh down
#
# CT_DIR: one CT series (e.g. ../shared/data/dicom/ircadb_01/PATIENT_DICOM); RESULTS_DIR: the output of
# `liverseg segment CT_DIR --out RESULTS_DIR` (seg.dcm, sr.dcm, stl.dcm, liver.glb, liver.stl, summary.json);
# ASSETS_DIR: filled by deploy/fetch-viewer.sh. Everything runs on 127.0.0.1; Orthanc has no bind option,
# so set NETNS=name to run Orthanc and the server inside a private network namespace with only loopback
# (then run the browser scripts with `ip netns exec name node ...`). State lives in $STANDIN_DIR
# (default /tmp/liverseg-standin); processes are stopped by their recorded PIDs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${STANDIN_DIR:-/tmp/liverseg-standin}"
HTTP_PORT="${ORTHANC_HTTP_PORT:-18142}"
DICOM_PORT="${ORTHANC_DICOM_PORT:-14342}"
WEB_PORT="${WEB_PORT:-18180}"
NS=()
[[ -n "${NETNS:-}" ]] && NS=(ip netns exec "$NETNS")

wait_gone() { local pid="$1"; for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

down() {
  for name in server orthanc; do
    if [[ -f "$DIR/$name.pid" ]]; then
      pid="$(cat "$DIR/$name.pid")"
      kill "$pid" 2>/dev/null || true
      wait_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
    fi
  done
  if [[ -n "${NETNS:-}" ]] && ip netns list | grep -qw "$NETNS"; then ip netns delete "$NETNS" || true; fi
  rm -rf "$DIR"
}

up() {
  local ct="$1" results="$2" assets="$3"
  [[ -d "$ct" && -f "$results/seg.dcm" && -f "$assets/VERSIONS" ]] || {
    echo "usage: $0 up CT_DIR RESULTS_DIR ASSETS_DIR (results from liverseg segment, assets from fetch-viewer.sh)" >&2; exit 2; }
  mkdir -p "$DIR/db"
  if [[ -n "${NETNS:-}" ]] && ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"; ip netns exec "$NETNS" ip link set lo up
  fi
  cat > "$DIR/orthanc.json" <<EOF
{ "Name": "STANDIN", "HttpPort": $HTTP_PORT, "DicomPort": $DICOM_PORT, "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "DicomAlwaysAllowStore": false,
  "StorageDirectory": "$DIR/db", "IndexDirectory": "$DIR/db", "StableAge": 3, "OverwriteInstances": true,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" } }
EOF
  "${NS[@]}" Orthanc "$DIR/orthanc.json" > "$DIR/orthanc.log" 2>&1 &
  echo $! > "$DIR/orthanc.pid"
  for _ in $(seq 1 100); do "${NS[@]}" curl -sf "http://127.0.0.1:$HTTP_PORT/system" >/dev/null && break; sleep 0.2; done
  local n=0
  for f in "$ct"/* "$results/seg.dcm" "$results/sr.dcm" "$results/stl.dcm"; do
    [[ -f "$f" ]] || continue
    "${NS[@]}" curl -sf -o /dev/null -X POST --data-binary @"$f" "http://127.0.0.1:$HTTP_PORT/instances" || { echo "upload failed: $f" >&2; exit 1; }
    n=$((n + 1))
  done
  local study
  study="$("${NS[@]}" curl -sf "http://127.0.0.1:$HTTP_PORT/dicom-web/studies" | node -e \
    'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0]["0020000D"].Value[0]))')"
  "${NS[@]}" node "$HERE/server.mjs" --port "$WEB_PORT" --assets "$assets" \
    --dicomweb "http://127.0.0.1:$HTTP_PORT/dicom-web" --results "$results" --study "$study" \
    --log "$DIR/proxy.jsonl" > "$DIR/server.out" 2> "$DIR/server.err" &
  echo $! > "$DIR/server.pid"
  for _ in $(seq 1 50); do "${NS[@]}" curl -sf -o /dev/null "http://127.0.0.1:$WEB_PORT/viewer/" && break; sleep 0.2; done
  cat <<EOF
{"study":"$study","uploaded":$n,"viewer":"http://127.0.0.1:$WEB_PORT/viewer","liver3d":"http://127.0.0.1:$WEB_PORT/3d/$study","dicomweb":"http://127.0.0.1:$WEB_PORT/dicom-web","proxy_log":"$DIR/proxy.jsonl","netns":"${NETNS:-}"}
EOF
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up CT_DIR RESULTS_DIR ASSETS_DIR | down" >&2; exit 2 ;;
esac
