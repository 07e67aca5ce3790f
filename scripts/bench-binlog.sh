#!/usr/bin/env bash
# bench-binlog.sh [SIZE_MIB=1024] [CHURN_PCT=1] [WORK=/var/tmp/bench-binlog] [DAYS=1]
#
# The binary-log archive's figures, all from one run on private MariaDB sandboxes:
#   1. server CPU (mysqld utime+stime from /proc) for DAYS days of `make-db.sh --churn` traffic
#      plus a probe committing a row every 100 ms, without a follower, then for as many other
#      days with `snap mysql archive --follow --flush-every 1s` running;
#   2. commit -> durable latency under that load (the probe's commits while following; a
#      commit is durable when an archive snapshot's range holds its GTID: that snapshot's
#      time_end);
#   3. stored bytes per GiB of binlog (bytes the archive snapshots added / bytes they hold);
#   4. replay of the same range (the full's coordinates to the archive's end) into a second
#      server: `snap mysql restore --until-position` (its replay_ms) against
#      `mariadb-binlog FILES | mariadb` on the server's own files, each after loading the full.
# Results in WORK/results.md. SNAP_BIN overrides the binary (default target/release/snap, or
# $CARGO_TARGET_DIR/release/snap). Ports 3455 and 3456.
set -euo pipefail
SIZE=${1:-1024}
CHURN=${2:-1}
WORK=${3:-/var/tmp/bench-binlog}
DAYS=${4:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=$(cd "$HERE/../../shared" && pwd)
SANDBOX="$SHARED/scripts/mariadb-sandbox.sh"
MAKEDB="$SHARED/bench/make-db.sh"
SNAP=${SNAP_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/release/snap}
PA=3455
PB=3456
[ -x "$SNAP" ] || { echo "no snap binary at $SNAP (cargo build --release)" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
cleanup() {
  [ -n "${FOLLOW_PID:-}" ] && kill "$FOLLOW_PID" 2>/dev/null || true
  bash "$SANDBOX" stop "$WORK/a" >/dev/null 2>&1 || true
  bash "$SANDBOX" stop "$WORK/b" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash "$SANDBOX" start "$WORK/a" $PA >/dev/null
bash "$SANDBOX" start "$WORK/b" $PB >/dev/null
export SNAP_REPOSITORY="$WORK/repo" SNAP_PASSWORD=bench SNAP_CACHE_DIR="$WORK/cache"
export SNAP_MYSQL_PASSWORD=snap
URL_A="mysql://snap@127.0.0.1:$PA"
URL_B="mysql://snap@127.0.0.1:$PB"
ma() { mariadb -usnap -psnap -h127.0.0.1 -P$PA --batch -N "$@"; }
mb() { mariadb -usnap -psnap -h127.0.0.1 -P$PB --batch -N "$@"; }
mysqld_pid() { cat "$WORK/a/mysqld.pid"; }
# clock ticks of user+system time of process $1
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
log "building benchdb ($SIZE MiB) on :$PA"
t0=$(now_ms)
MYSQL_HOST=127.0.0.1 MYSQL_TCP_PORT=$PA MYSQL_USER=snap MYSQL_PWD=snap bash "$MAKEDB" "$SIZE" >&2
log "built in $(( ($(now_ms) - t0) / 1000 )) s"
"$SNAP" init >/dev/null
ma -e "RESET MASTER"
t0=$(now_ms)
"$SNAP" --json backup --mysql "$URL_A" --mysql-database benchdb > "$WORK/full.json"
log "full backup in $(( ($(now_ms) - t0) / 1000 )) s"
FULL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/full.json")
log "full $FULL"

churn() {
  MYSQL_HOST=127.0.0.1 MYSQL_TCP_PORT=$PA MYSQL_USER=snap MYSQL_PWD=snap \
    bash "$MAKEDB" "$SIZE" --churn "$CHURN" "$1" >&2
}

probe() { # commits a row every 100 ms until $WORK/probe.stop, logging "GTID ms" to $1
  : > "$1"
  local i=$2
  while [ ! -f "$WORK/probe.stop" ]; do
    i=$((i + 1))
    # the commit's GTID and the moment the client saw the commit return
    g=$(ma benchdb -e "INSERT INTO probe VALUES ($i, 0); SELECT @@last_gtid")
    echo "$g $(now_ms)" >> "$1"
    sleep 0.1
  done
}
ma benchdb -e "CREATE TABLE IF NOT EXISTS probe (id BIGINT PRIMARY KEY, at BIGINT)"
pid=$(mysqld_pid)
# one phase: DAYS days of churn (seeds from $1) and the probe; sets CPU_MS and WALL_MS
phase() {
  rm -f "$WORK/probe.stop"
  probe "$WORK/probe-$1.txt" $(( $1 * 1000000 )) &
  local pr=$! c0 c1 t0 t1 d
  c0=$(cpu_ticks "$pid"); t0=$(now_ms)
  for d in $(seq 1 "$DAYS"); do churn $(( $1 * 100 + d )); done
  c1=$(cpu_ticks "$pid"); t1=$(now_ms)
  touch "$WORK/probe.stop"; wait $pr
  CPU_MS=$(( (c1 - c0) * 1000 / tick )); WALL_MS=$(( t1 - t0 ))
}

# 1a. server CPU without a follower
phase 1
CPU1=$CPU_MS; WALL1=$WALL_MS
"$SNAP" mysql archive "$URL_A" >/dev/null
log "without follower: server $CPU1 ms CPU in $WALL1 ms"

# 1b. the same load with --follow
"$SNAP" mysql archive "$URL_A" --follow --flush-every 1s >/dev/null 2>"$WORK/follow.err" &
FOLLOW_PID=$!
sleep 3
phase 2
CPU2=$CPU_MS; WALL2=$WALL_MS
cp "$WORK/probe-2.txt" "$WORK/probe.txt"
sleep 3
# the follower's own CPU and its copy child's, read before it ends
FOLLOW_TICKS=$(( $(cpu_ticks "$FOLLOW_PID") + $(for c in $(cat /proc/"$FOLLOW_PID"/task/*/children); do cpu_ticks "$c"; done | awk '{s+=$1} END {print s+0}') ))
kill -TERM "$FOLLOW_PID"; wait "$FOLLOW_PID" || true
FOLLOW_PID=
log "following: server $CPU2 ms CPU in $WALL2 ms"
"$SNAP" mysql archive "$URL_A" >/dev/null
read -r END_FILE END_POS < <(ma -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
"$SNAP" --json snapshots --tag binlog > "$WORK/archive.json"

# 4. replay of the same range into B, each run right after loading the full into it (snap's
# restore loads it itself; replay_ms is its replay alone); ROUNDS rounds, alternating which goes
# first, as the machine's load and B's cache state vary (3 by default, so each median is one
# run; both medians are computed alike)
mb -e "SET GLOBAL max_allowed_packet = 1073741824"
read -r FP_FILE FP_POS < <(python3 -c '
import json,sys; m=json.load(open(sys.argv[1]))["snapshot"]["mysql"]
print(m["binlog_file"], m["binlog_position"])' "$WORK/full.json")
FILES=$(ma -e "SHOW BINARY LOGS" | awk -v a="$FP_FILE" -v b="$END_FILE" '$1 >= a && $1 <= b {print $1}')
PATHS=$(for f in $FILES; do echo "$WORK/a/data/$f"; done)
RANGE_BYTES=$(ma -e "SHOW BINARY LOGS" | awk -v a="$FP_FILE" -v b="$END_FILE" -v fp="$FP_POS" -v ep="$END_POS" '
  $1 >= a && $1 <= b {s += $2; if ($1 == a) s -= fp; if ($1 == b) s -= ($2 - ep)} END {print s}')
log "replay range $FP_FILE:$FP_POS .. $END_FILE:$END_POS ($RANGE_BYTES bytes)"
sums() { "$1" -e "CHECKSUM TABLE benchdb.orders, benchdb.events, benchdb.attachments EXTENDED" | awk '{print $2}' | tr '\n' ' '; }
baseline() {
  mb -e "DROP DATABASE IF EXISTS benchdb"
  "$SNAP" mysql restore "$FULL" --to "$URL_B" >/dev/null
  local t0; t0=$(now_ms)
  # shellcheck disable=SC2086
  mariadb-binlog --skip-gtid-strict-mode --start-position="$FP_POS" --stop-position="$END_POS" $PATHS |
    mariadb -usnap -psnap -h127.0.0.1 -P$PB --binary-mode --max-allowed-packet=1G
  BASE_RUNS="$BASE_RUNS $(( $(now_ms) - t0 ))"
  SUM_BASE=$(sums mb)
  log "mariadb-binlog | mariadb: ${BASE_RUNS##* } ms"
}
snaprun() {
  mb -e "DROP DATABASE IF EXISTS benchdb"
  "$SNAP" --json mysql restore --to "$URL_B" --until-position "$END_FILE:$END_POS" > "$WORK/pitr.json"
  SNAP_RUNS="$SNAP_RUNS $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["replay_ms"])' "$WORK/pitr.json")"
  SUM_SNAP=$(sums mb)
  log "snap replay: ${SNAP_RUNS##* } ms"
}
BASE_RUNS=; SNAP_RUNS=
for r in $(seq 1 "${ROUNDS:-3}"); do
  if [ $((r % 2)) = 1 ]; then baseline; snaprun; else snaprun; baseline; fi
done
SUM_SRC=$(sums ma)
BASE_MS=$(echo $BASE_RUNS | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

python3 - "$WORK" "$tick" "$CPU1" "$WALL1" "$CPU2" "$WALL2" "$FOLLOW_TICKS" "$BASE_MS" "$RANGE_BYTES" "$SIZE" "$CHURN" \
  "$SUM_BASE" "$SUM_SNAP" "$SUM_SRC" "$DAYS" "$BASE_RUNS" "$SNAP_RUNS" <<'PY'
import json, os, sys, statistics, datetime
work, tick = sys.argv[1], int(sys.argv[2])
cpu1, wall1, cpu2, wall2, follow_ticks = (int(x) for x in sys.argv[3:8])
base_ms, range_bytes, size, churn = int(sys.argv[8]), int(sys.argv[9]), sys.argv[10], sys.argv[11]
sum_base, sum_snap, sum_src = sys.argv[12:15]
days = sys.argv[15]
base_runs = [int(x) for x in sys.argv[16].split()]
snap_runs = [int(x) for x in sys.argv[17].split()]
text = open(os.path.join(work, "results.md"), "a")
def out(s=""):
    print(s); text.write(s + "\n")
pitr = json.load(open(os.path.join(work, "pitr.json")))
events = pitr["plan"]["events"]
snap_ms = statistics.median(snap_runs)
# the same median for both tools (with an even number of rounds, the mean of the middle two)
base_ms = statistics.median(base_runs)
arch = json.load(open(os.path.join(work, "archive.json")))
held = added = 0
durable = []
for v in arch:
    s = v["snapshot"]
    added += s["summary"]["bytes_added"]
    t = datetime.datetime.fromisoformat(s["time_end"]).timestamp() * 1000
    for seg in s["binlog"]["segments"]:
        held += seg["end"] - seg["start"]
        if seg.get("gtid_last"):
            durable.append((int(seg["gtid_last"].rsplit("-", 1)[1]), t))
durable.sort()
lat = []
for line in open(os.path.join(work, "probe.txt")):
    parts = line.split()
    if len(parts) != 2:
        continue
    seq, at = int(parts[0].rsplit("-", 1)[1]), int(parts[1])
    d = next((t for s, t in durable if s >= seq), None)
    if d is not None:
        lat.append(d - at)
lat.sort()
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
out(f"## bench-binlog.sh {size} MiB, --churn {churn}, {days} day(s) per phase ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)")
out(f"CPU: {cpu}, {os.cpu_count()} cores (shared, loaded)")
out()
out("| figure | value |")
out("|---|---|")
runs = lambda r: ", ".join(f"{x/1000:.1f}" for x in r)
out(f"| replay, snap (`mysql restore --until-position`, replay part), median | {snap_ms/1000:.1f} s: {events/(snap_ms/1000):.0f} events/s, {range_bytes/1e6/(snap_ms/1000):.2f} MB/s (runs: {runs(snap_runs)} s) |")
out(f"| replay, `mariadb-binlog FILES \\| mariadb`, median | {base_ms/1000:.1f} s: {events/(base_ms/1000):.0f} events/s, {range_bytes/1e6/(base_ms/1000):.2f} MB/s (runs: {runs(base_runs)} s) |")
out(f"| range replayed | {events} events, {range_bytes/1e6:.1f} MB of binlog; checksums snap {sum_snap.strip()} / baseline {sum_base.strip()} / source {sum_src.strip()} |")
out(f"| server (mysqld) CPU, churn + probe, no follower | {cpu1/1000:.1f} s CPU in {wall1/1000:.1f} s |")
out(f"| server (mysqld) CPU, same load (other seeds), `--follow --flush-every 1s` | {cpu2/1000:.1f} s CPU in {wall2/1000:.1f} s ({(cpu2-cpu1)/max(cpu1,1)*100:+.1f}%) |")
out(f"| stored bytes per GiB of binlog | {added / held * 2**30 / 2**20:.0f} MiB ({added} added for {held} held) |")
if lat:
    out(f"| commit -> durable, --flush-every 1s, under churn | median {statistics.median(lat):.0f} ms, p99 {lat[min(len(lat)-1, len(lat)*99//100)]:.0f} ms over {len(lat)} commits |")
out(f"| follower's own CPU (snap + its mariadb-binlog child) | {follow_ticks/tick:.1f} s over the whole follow |")
PY
