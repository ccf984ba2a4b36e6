#!/usr/bin/env bash
# bench/replicate.sh — arkbox's offsite sync side by side with rclone, to the
# same local S3 server (versitygw), on real data.
#
#   bench/replicate.sh [--runs N] [--data DIR]
#
# 1. A repository on a 2+1 pool of three folders holds a backup of DIR
#    (default: the /usr set that bench/run.sh prepares, else its Go
#    toolchain, else $GOROOT). Its objects are also written to a plain folder (a sync to a
#    file:// target), which is what rclone copies.
# 2. Per run: `rclone copy FOLDER :s3:rclone-N` (4 transfers, its default)
#    and `arkbox replicate run` to an empty bucket (4 connections, its
#    default), each timed; throughput and the ratio arkbox/rclone.
# 3. An up-to-date sync of that repository, and BenchmarkUpToDateSync: an
#    up-to-date sync of a 10k-object pool (target: ≤ 2 s).
set -euo pipefail

RUNS=3
DATA=""
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=${2:?}; shift 2 ;;
	--data) DATA=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "replicate.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ARKBOX_BENCH_CACHE:-$HOME/.cache/arkbox-bench}
if [ -z "$DATA" ]; then
	for d in "$CACHE/data/usr-1300MB" "$CACHE/data/go1.24.0" "$(go env GOROOT)"; do
		if [ -d "$d" ]; then DATA=$d; break; fi
	done
fi
START=$SECONDS
say() { printf '[%3d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

"$ROOT/scripts/test-deps.sh"
VGW=${ARKBOX_VERSITYGW:-${XDG_CACHE_HOME:-$HOME/.cache}/arkbox/bin/versitygw}
(cd "$ROOT" && go build -trimpath -o bin/arkbox ./appliance/cmd/arkbox)
ARK=$ROOT/bin/arkbox

W=$(mktemp -d "${TMPDIR:-/tmp}/arkbox-bench-repl.XXXXXX")
VPID=""
trap '[ -n "$VPID" ] && kill $VPID 2>/dev/null; rm -rf "$W"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AK=benchaccess
SK=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$W/s3"
"$VGW" --port "127.0.0.1:$PORT" --access "$AK" --secret "$SK" posix "$W/s3" >"$W/versitygw.log" 2>&1 &
VPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
echo "$SK" >"$W/secret"
export ARKBOX_PASSWORD=arkbox-bench ARKBOX_REPO=$W/box
S3FLAGS=(--access-key "$AK" --secret-key-file "$W/secret" --insecure)
RCLONE=(env -u AWS_CA_BUNDLE rclone --s3-provider=Other "--s3-endpoint=http://127.0.0.1:$PORT" "--s3-access-key-id=$AK" "--s3-secret-access-key=$SK" --s3-force-path-style=true)

say "data: $DATA ($(du -sh "$DATA" | cut -f1))"
mkdir -p "$W/d1" "$W/d2" "$W/d3"
"$ARK" init --disk "$W/d1" --disk "$W/d2" --disk "$W/d3" >/dev/null
"$ARK" backup "$DATA" >/dev/null 2>&1
"$ARK" replicate add folder "file://$W/objects" >/dev/null
"$ARK" replicate run folder >/dev/null
OBJS=$(find "$W/objects" -type f | wc -l)
BYTES=$(du -sb "$W/objects" | cut -f1)
say "repository: $OBJS objects, $((BYTES / 1048576)) MiB"

t() { # t OUTVAR CMD...: wall seconds and peak RSS (KiB) of CMD
	/usr/bin/time -f '%e %M' -o "$W/time" "${@:2}" >"$W/cmd.log" 2>&1 || { cat "$W/cmd.log"; exit 1; }
	read -r "$1" RSSK <"$W/time"
}
declare -a RC AK_T
for r in $(seq "$RUNS"); do
	t rc "${RCLONE[@]}" copy "$W/objects" ":s3:rclone-$r" --transfers 4
	"$ARK" replicate add "s3-$r" "s3://127.0.0.1:$PORT/arkbox-$r" "${S3FLAGS[@]}" >/dev/null
	t ak "$ARK" replicate run "s3-$r"
	ark_rss=$RSSK
	RC+=("$rc")
	AK_T+=("$ak")
	say "run $r: rclone copy $rc s ($(awk -v b="$BYTES" -v s="$rc" 'BEGIN{printf "%.1f", b/s/1e6}') MB/s)  arkbox replicate run $ak s ($(awk -v b="$BYTES" -v s="$ak" 'BEGIN{printf "%.1f", b/s/1e6}') MB/s, RSS $((ark_rss / 1024)) MiB)"
	rm -rf "$W/s3/rclone-$r" "$W/s3/arkbox-$r"
	"$ARK" replicate remove "s3-$r" >/dev/null
done
"$ARK" replicate add again "s3://127.0.0.1:$PORT/again" "${S3FLAGS[@]}" >/dev/null
"$ARK" replicate run again >/dev/null
t up "$ARK" replicate run again
say "up-to-date sync of the $OBJS-object repository: $up s"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mrc=$(median "${RC[@]}")
mak=$(median "${AK_T[@]}")
say "up-to-date sync of a 10k-object pool (go test -bench UpToDateSync; fills a pool first, a few minutes)"
bench=$(cd "$ROOT" && go test -run '^$' -bench UpToDateSync -benchtime 5x ./replicate 2>&1 | awk '/^BenchmarkUpToDateSync/ {printf "%.2f", $3/1e9}')
echo
echo "| sync of $OBJS objects, $((BYTES / 1048576)) MiB to versitygw (median of $RUNS) | seconds | MB/s |"
echo "|---|---|---|"
echo "| rclone copy (4 transfers) | $mrc | $(awk -v b="$BYTES" -v s="$mrc" 'BEGIN{printf "%.1f", b/s/1e6}') |"
echo "| arkbox replicate run (4 connections) | $mak | $(awk -v b="$BYTES" -v s="$mak" 'BEGIN{printf "%.1f", b/s/1e6}') |"
echo "| ratio arkbox/rclone throughput (target ≥ 0.9) | | $(awk -v a="$mak" -v r="$mrc" 'BEGIN{printf "%.2f", r/a}') |"
echo "| up-to-date sync, this repository | $up | |"
echo "| up-to-date sync, 10k-object pool (target ≤ 2 s) | $bench | |"
