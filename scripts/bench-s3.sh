#!/usr/bin/env bash
# bench-s3.sh [WORKROOT] [SIZE] -- snap and restic against the same local S3 server on 127.0.0.1,
# same run, on the shared corpus (default 2G): backup1, a no-change backup, restore. Wall time and
# peak RSS of each, the requests each made (counted by the server), and requests per GiB stored.
# BENCH_S3_SERVER=garage (default: a one-node Garage, ../shared/scripts/garage-cluster.sh; requests
# from its metrics) or moto (moto_server; requests from its access log: a Python server that
# spends a core of its own on every byte, so both clients wait on it). Results in
# WORKROOT/s3/results-SERVER.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
ROOT=${1:-/var/tmp/bench}
SIZE=${2:-2G}
SERVER=${BENCH_S3_SERVER:-garage}
PORT=${BENCH_S3_PORT:-9400}
command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
[ -x "$SNAP_BIN" ] || cargo build --release --locked
W=$ROOT/s3
mkdir -p "$W"
CORPUS=$W/corpus
[ -d "$CORPUS" ] || "$SHARED/bench/make-corpus.sh" "$CORPUS" --size "$SIZE" --seed 1 >/dev/null
rm -rf "$W/snap-cache" "$W/restic-cache" "$W/restore-"*
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
case $SERVER in
  moto)
    command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
    LOG=$W/moto.log
    moto_server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
    MOTO=$!
    trap 'kill $MOTO 2>/dev/null; wait $MOTO 2>/dev/null || true; rm -rf "$W/restore-"*' EXIT
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
    EP=http://127.0.0.1:$PORT
    python3 - "$EP" <<'PY'
import sys, urllib.request
for b in ("bench-snap", "bench-restic"):
    urllib.request.urlopen(urllib.request.Request(f"{sys.argv[1]}/{b}", method="PUT"))
PY
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    SB_BUCKET=bench-snap SB_PREFIX=repo RB_BUCKET=bench-restic RB_PREFIX=repo
    requests() { grep -c '" [0-9][0-9][0-9] ' "$LOG" || true; }
    SERVER_PID=$MOTO ;;
  garage)
    G=$W/garage
    rm -rf "$G"
    eval "$("$SHARED/scripts/garage-cluster.sh" start "$G" 1 39400)"
    trap '"$SHARED/scripts/garage-cluster.sh" stop "$G" >/dev/null 2>&1 || true; rm -rf "$G" "$W/restore-"*' EXIT
    EP=$AWS_ENDPOINT_URL
    SB_BUCKET=$SNAP_TEST_S3_BUCKET SB_PREFIX=bench-snap RB_BUCKET=$SNAP_TEST_S3_BUCKET RB_PREFIX=bench-restic
    requests() {
      curl -s http://127.0.0.1:39413/metrics |
        awk '/^api_s3_request_counter/ { s += $NF } END { printf "%d", s }'
    }
    SERVER_PID=$(cat "$G/n1/pid") ;;
  *) echo "BENCH_S3_SERVER is moto or garage" >&2; exit 2 ;;
esac
export SNAP_PASSWORD=bench RESTIC_PASSWORD=bench SNAP_CACHE_DIR=$W/snap-cache RESTIC_CACHE_DIR=$W/restic-cache
SNAP_R=s3://$SB_BUCKET/$SB_PREFIX
RESTIC_R=s3:$EP/$RB_BUCKET/$RB_PREFIX
SNAP=("$SNAP_BIN" -r "$SNAP_R" --s3-endpoint "$EP")

# The server's CPU time so far, in clock ticks: on one machine the client and the server share
# the cores, so a phase that is CPU-bound is bound by both together.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
TICK=$(getconf CLK_TCK)
# run NAME CMD...: wall time, peak RSS (KiB), requests, the command's CPU seconds (user+system)
# and the server's CPU seconds during it, appended to $W/runs
: > "$W/runs"
run() {
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  local before; before=$(requests)
  local s0; s0=$(server_ticks)
  /usr/bin/time -f "%e %M %U %S" -o "$W/time" "$@" >/dev/null
  local s1; s1=$(server_ticks)
  local after; after=$(requests)
  read -r t m u sy < "$W/time"
  echo "$name $t $m $((after - before)) $(awk -v u="$u" -v s="$sy" 'BEGIN { print u + s }') \
    $(awk -v a="$s0" -v b="$s1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')" >> "$W/runs"
}
"${SNAP[@]}" init --kdf-memory-kib 65536 >/dev/null
restic init -q -r "$RESTIC_R" >/dev/null
run snap-backup1 "${SNAP[@]}" backup -q "$CORPUS"
run restic-backup1 restic backup -q -r "$RESTIC_R" "$CORPUS"
run snap-nochange "${SNAP[@]}" backup -q "$CORPUS"
run restic-nochange restic backup -q -r "$RESTIC_R" "$CORPUS"
run snap-restore "${SNAP[@]}" restore -q latest --target "$W/restore-snap"
run restic-restore restic restore -q -r "$RESTIC_R" latest --target "$W/restore-restic"
python3 "$PWD/scripts/manifest.py" "$CORPUS" > "$W/m-src"
python3 "$PWD/scripts/manifest.py" "$W/restore-snap$CORPUS" > "$W/m-snap"
cmp "$W/m-src" "$W/m-snap" || { echo "snap restore differs" >&2; exit 1; }
stored() {
  python3 - "$EP" "$1" "$2" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name=os.environ["AWS_REGION"])
total = 0
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3] + "/")
for page in pages:
    total += sum(o["Size"] for o in page.get("Contents", []))
print(total)
PY
}
SB=$(stored "$SB_BUCKET" "$SB_PREFIX"); RB=$(stored "$RB_BUCKET" "$RB_PREFIX")
# The server's floor for a restore: every object of snap's repository fetched whole, 4 GETs at a
# time (snap's remote pack writers and read-ahead use 4), by curl to /dev/null: no decryption, no
# decompression, no file writes. A restore cannot beat this; restic/floor says what is left.
python3 - "$EP" "$SB_BUCKET" "$SB_PREFIX" > "$W/objects" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name=os.environ["AWS_REGION"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3] + "/"):
    for o in page.get("Contents", []):
        print(f"{sys.argv[1]}/{sys.argv[2]}/{o['Key']}")
PY
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
# the credentials go in a private curl config file, not on command lines (the process list)
# (Garage wants the payload hash header, which curl does not send by itself)
(umask 077; printf 'user = "%s:%s"\naws-sigv4 = "aws:amz:%s:s3"\nheader = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_REGION" > "$W/curl.conf")
fetch_all() { xargs -P 4 -n 1 curl -sf -K "$W/curl.conf" -o /dev/null < "$W/objects"; }
/usr/bin/time -f "%e %M" -o "$W/time" bash -c "$(declare -f fetch_all); W='$W' fetch_all"
rm -f "$W/curl.conf"
read -r FLOOR _ < "$W/time"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
python3 - "$W/runs" "$SB" "$RB" "$SIZE" "$cpu" "$SERVER" "$FLOOR" <<'PY' | tee "$W/results-$SERVER.md"
import sys
runs = {}
for l in open(sys.argv[1]):
    n, t, m, r, cpu, server = l.split()
    runs[n] = (float(t), int(m) // 1024, int(r), float(cpu), float(server))
sb, rb = int(sys.argv[2]), int(sys.argv[3])
print(f"corpus {sys.argv[4]}, {sys.argv[6]} on 127.0.0.1, CPU: {sys.argv[5]}, {__import__('os').cpu_count()} cores\n")
print("| phase | snap s | restic s | restic/snap | snap RSS MiB | restic RSS MiB | snap requests | restic requests | CPU s snap + server | CPU s restic + server |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in ("backup1", "nochange", "restore"):
    s, r = runs[f"snap-{p}"], runs[f"restic-{p}"]
    print(f"| {p} | {s[0]:.2f} | {r[0]:.2f} | {r[0]/s[0]:.2f}x | {s[1]} | {r[1]} | {s[2]} | {r[2]} "
          f"| {s[3]:.2f} + {s[4]:.2f} | {r[3]:.2f} + {r[4]:.2f} |")
floor = float(sys.argv[7])
print(f"| restore floor (GET all snap objects, 4 at a time, to /dev/null) | {floor:.2f} | | "
      f"restic/floor {runs['restic-restore'][0]/floor:.2f}x | | | | | | |")
cores = __import__('os').cpu_count()
s = runs["snap-restore"]
print(f"\nsnap restore's CPU bound on {cores} cores shared with the server: "
      f"({s[3]:.2f} + {s[4]:.2f}) / {cores} = {(s[3] + s[4]) / cores:.2f} s")
gs, gr = sb / 2**30, rb / 2**30
print(f"\nstored: snap {sb/2**20:.0f} MiB, restic {rb/2**20:.0f} MiB; backup1 requests per GiB stored: "
      f"snap {runs['snap-backup1'][2]/gs:.0f}, restic {runs['restic-backup1'][2]/gr:.0f}")
PY
