#!/usr/bin/env bash
# bench/sftp.sh — SFTP ingest: `arkbox serve` side by side with OpenSSH's
# sftp-server writing to a plain folder, both through OpenSSH's `sftp` client.
#
#   bench/sftp.sh [--runs N] [--quick] [--keep] [--cpuprofile FILE]
#
# Per run, on a fresh arkbox data folder and a fresh plain folder behind a
# temporary sshd on 127.0.0.1 (internal-sftp, its own configuration):
#
# 1. 1 GiB of incompressible data (/dev/urandom), one file: `put -p`;
# 2. 1 GiB of real data (a tar of the /usr set of bench/run.sh), one file: `put -p`;
# 3. a tree of 10,000 small real files (Go sources, each ≤ 64 KiB): `put -rp`;
# 4. the same tree again, unchanged, over the first copy: `put -rp`.
#
# Reading back (after 2, the file clean in arkbox's repository): `sftp get`
# of the real-data file from each server; and the share filesystem's read
# path without SSH (`go test -bench ReadClean` of storage/sharefs on a 2+1
# pool, 32 KiB and 1 MiB requests) against `restic restore` of the same
# file from a restic repository.
#
# Each upload is timed (`sftp -b BATCH`), then made durable and timed: on
# arkbox `arkbox snapshot backups` (upload finished → snapshot committed), on
# OpenSSH `sync`. Figures: MB/s, files/s, arkbox/OpenSSH throughput, CPU of
# each server, bytes the repository grew by, peak RSS of `arkbox serve`.
# Details and how to read them: bench/README.md.
#
#   --runs N           runs (default 3, --quick 1); the tables show medians
#   --quick            256 MiB files and 2,000 small files: a check of a few minutes
#   --keep             keep the work folder (logs, data folders, the last run's uploads)
#   --cpuprofile FILE  CPU profiles of `arkbox serve`: FILE for uploads 1-3, FILE.again
#                      for 4 (FILE.runN… with several runs); `go tool pprof -top bin/arkbox FILE`
#
# Environment:
#   ARKBOX_BENCH_CACHE       data sets (default $HOME/.cache/arkbox-bench)
#   ARKBOX_BENCH_SFTP_MIB    size of each large file in MiB (default 1024, --quick 256)
#   ARKBOX_BENCH_SFTP_FILES  number of small files (default 10000, --quick 2000)
#   ARKBOX_BENCH_CIPHER      SSH cipher for both servers (default: what sftp negotiates,
#                            chacha20-poly1305@openssh.com)
#   ARKBOX_BENCH_SFTP_OPTS   more sftp options for both servers, split at spaces
#                            (e.g. "-B 32768": the write size OpenSSH's sftp uses with arkbox)
#   ARKBOX_BIN               use this arkbox binary instead of building ./appliance/cmd/arkbox
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

RUNS=""
QUICK=0
KEEP=0
PROFILE=""
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
	--runs=*) RUNS=${1#--runs=}; shift ;;
	--quick) QUICK=1; shift ;;
	--keep) KEEP=1; shift ;;
	--cpuprofile) PROFILE=${2:?--cpuprofile needs a file}; shift 2 ;;
	--cpuprofile=*) PROFILE=${1#--cpuprofile=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "sftp.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
done
if [ -z "$RUNS" ]; then
	if [ $QUICK = 1 ]; then RUNS=1; else RUNS=3; fi
fi
case $RUNS in '' | *[!0-9]* | 0) echo "sftp.sh: --runs wants a positive integer" >&2; exit 2 ;; esac
if [ -n "$PROFILE" ]; then PROFILE=$(cd "$(dirname "$PROFILE")" && pwd)/$(basename "$PROFILE"); fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
CACHE=${ARKBOX_BENCH_CACHE:-$HOME/.cache/arkbox-bench}
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh" # RESTIC_VERSION, build_peer
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-arkbox-bench}
if [ $QUICK = 1 ]; then
	BIG_MIB=${ARKBOX_BENCH_SFTP_MIB:-256}
	NSMALL=${ARKBOX_BENCH_SFTP_FILES:-2000}
else
	BIG_MIB=${ARKBOX_BENCH_SFTP_MIB:-1024}
	NSMALL=${ARKBOX_BENCH_SFTP_FILES:-10000}
fi
CIPHER=${ARKBOX_BENCH_CIPHER:-}
read -r -a EXTRA_OPTS <<<"${ARKBOX_BENCH_SFTP_OPTS:-}"
# The passphrase and the profile are the server's own business: the CLI
# commands below reach it through its control socket.
unset ARKBOX_PASSWORD ARKBOX_REPO ARKBOX_CPUPROFILE

START=$SECONDS
say() { printf '[%3d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }
W=""
die() {
	printf 'sftp.sh: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- servers

APID="" SPID=""
stop_arkbox() {
	if [ -n "$APID" ]; then
		kill -TERM "$APID" 2>/dev/null || true
		wait "$APID" 2>/dev/null || true
		APID=""
	fi
}
cleanup() {
	local rc=$?
	stop_arkbox
	if [ -n "$SPID" ]; then
		kill -TERM "$SPID" 2>/dev/null || true
		wait "$SPID" 2>/dev/null || true
	fi
	if [ -n "$W" ] && [ $KEEP = 0 ]; then
		if [ $rc = 0 ]; then
			rm -rf "$W"
		else
			printf 'sftp.sh: work folder kept for inspection: %s\n' "$W" >&2
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools() {
	local need=() c
	[ -x /usr/bin/time ] || need+=(time)
	[ -x /usr/sbin/sshd ] || need+=(openssh-server)
	command -v sftp >/dev/null || need+=(openssh-client)
	if [ ${#need[@]} -gt 0 ]; then
		say "installing ${need[*]}"
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
	fi
	for c in go tar find du ssh-keygen python3 sha256sum; do command -v $c >/dev/null || die "$c is missing"; done
}

build_arkbox() {
	if [ -n "${ARKBOX_BIN:-}" ]; then
		ARK=$ARKBOX_BIN
		[ -x "$ARK" ] || die "ARKBOX_BIN=$ARK is not executable"
		return
	fi
	say "building arkbox"
	(cd "$ROOT" && go build -trimpath -o bin/arkbox ./appliance/cmd/arkbox) || die "building arkbox failed"
	ARK=$ROOT/bin/arkbox
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ssh_opts SERVER: the sftp options for one server (both log in with the same key).
ssh_opts() {
	local port
	if [ "$1" = arkbox ]; then port=$APORT; else port=$SPORT; fi
	SSHOPTS=(-P "$port" -F /dev/null -i "$W/ssh/client_ed25519" -o IdentitiesOnly=yes
		-o PreferredAuthentications=publickey -o BatchMode=yes -o StrictHostKeyChecking=no
		-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=20)
	if [ -n "$CIPHER" ]; then SSHOPTS+=(-o "Ciphers=$CIPHER"); fi
	SSHOPTS+=("${EXTRA_OPTS[@]}")
}
# negotiated SERVER: the cipher a login to SERVER negotiates (an untimed login).
negotiated() {
	ssh_opts "$1"
	{ sftp -o LogLevel=DEBUG1 "${SSHOPTS[@]}" -b /dev/null "$(login_of "$1")" 2>&1 </dev/null || true; } |
		awk '/kex: client->server cipher:/ && !c {for (i = 1; i < NF; i++) if ($i == "cipher:") c = $(i + 1)} END {print c}'
}
login_of() { if [ "$1" = arkbox ]; then echo "admin@127.0.0.1"; else echo "$SUSER@127.0.0.1"; fi; }

# The OpenSSH side: sshd with its own configuration and keys, internal-sftp,
# the current user logging in with the client key. One sshd serves every run.
start_sshd() {
	mkdir -p "$W/ssh"
	chmod 700 "$W/ssh"
	ssh-keygen -q -t ed25519 -N "" -f "$W/ssh/host_ed25519"
	ssh-keygen -q -t ed25519 -N "" -f "$W/ssh/client_ed25519"
	cp "$W/ssh/client_ed25519.pub" "$W/ssh/authorized_keys"
	SUSER=$(id -un)
	if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi # privilege separation folder
	local attempt
	for attempt in 1 2 3; do
		SPORT=$(free_port)
		cat >"$W/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1:$SPORT
HostKey $W/ssh/host_ed25519
AuthorizedKeysFile $W/ssh/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
		/usr/sbin/sshd -D -e -f "$W/ssh/sshd_config" >>"$W/logs/sshd.log" 2>&1 &
		SPID=$!
		local i
		for i in $(seq 100); do
			if ! kill -0 "$SPID" 2>/dev/null; then break; fi
			if (exec 3<>"/dev/tcp/127.0.0.1/$SPORT") 2>/dev/null; then return; fi
			sleep 0.1
		done
		kill "$SPID" 2>/dev/null || true
		wait "$SPID" 2>/dev/null || true
		SPID=""
	done
	tail -n 20 "$W/logs/sshd.log" >&2
	die "sshd did not start"
}

# serve DATA LOG [ENV...]: starts `arkbox serve` with SFTP on a free port and
# waits until it serves; sets APID and APORT.
serve() {
	local data=$1 log=$2 i
	shift 2
	env "$@" "$ARK" serve --repo "$data" --sftp-addr 127.0.0.1:0 >"$log.out" 2>"$log" &
	APID=$!
	for i in $(seq 600); do
		if grep -q '^arkbox serving' "$log.out" 2>/dev/null; then break; fi
		kill -0 "$APID" 2>/dev/null || { tail -n 20 "$log" >&2; die "arkbox serve ended at start"; }
		sleep 0.1
	done
	grep -q '^arkbox serving' "$log.out" || die "arkbox serve did not start within a minute (see $log)"
	APORT=$(sed -n 's/^SFTP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log.out")
	[ -n "$APORT" ] || die "no SFTP address in the output of arkbox serve"
}

# start_arkbox DATA LOG: `arkbox serve` on a fresh data folder. The first start
# prints the admin password, which is checked with one password login; the
# admin gets the client key (the measured uploads log in with it, as on the
# OpenSSH side). Then the server is stopped, every schedule in arkbox.json set
# to "never" (so that the only snapshots are the measured ones), and the server
# started again, with the CPU profile if asked for.
start_arkbox() {
	local data=$1 log=$2 i
	serve "$data" "$log.first"
	APASS=$(sed -n 's/^administrator login: user admin, password \(.*\)$/\1/p' "$log.first.out")
	[ -n "$APASS" ] || die "no admin password in the output of arkbox serve (not a first start?)"
	if command -v sshpass >/dev/null; then
		printf 'ls /\n' >"$W/batch-check"
		SSHPASS=$APASS sshpass -e sftp -P "$APORT" -F /dev/null -o BatchMode=no -o PubkeyAuthentication=no \
			-o PreferredAuthentications=password -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
			-o LogLevel=ERROR -b "$W/batch-check" admin@127.0.0.1 >>"$log.client" 2>&1 ||
			die "password login to arkbox failed (see $log.client)"
	fi
	"$ARK" user key add admin --authorized-key "$W/ssh/client_ed25519.pub" --repo "$data" >>"$log.client" 2>&1 ||
		die "arkbox user key add failed (see $log.client)"
	stop_arkbox
	python3 - "$data/arkbox.json" <<'PY' || die "could not turn the schedules off in $data/arkbox.json"
import json, sys
path = sys.argv[1]
with open(path) as f:
    c = json.load(f)
for share in c.get("shares", []):
    for s in share.get("snapshots", []):
        s["schedule"] = "never"
for task in ("prune", "scrub", "verify"):
    c.setdefault(task, {})["schedule"] = "never"
with open(path, "w") as f:
    json.dump(c, f, indent=2)
    f.write("\n")
PY
	serve_measured "$data" "$log" ""
}

# serve_measured DATA LOG SUFFIX: `arkbox serve` for measuring, with the CPU
# profile (named with SUFFIX) if asked for; sets START_RSS and resets the peak.
serve_measured() {
	local data=$1 log=$2 i envs=()
	if [ -n "$PROFILE" ]; then
		ARK_PROFILE=$PROFILE
		[ "$RUNS" = 1 ] || ARK_PROFILE=$ARK_PROFILE.run$r
		ARK_PROFILE=$ARK_PROFILE$3
		PROFILES+=("$ARK_PROFILE")
		envs+=(ARKBOX_CPUPROFILE="$ARK_PROFILE")
	fi
	serve "$data" "$log" "${envs[@]}"
	# Nothing is scheduled now; still, wait until no job runs.
	for i in $(seq 121); do
		if ! "$ARK" jobs --repo "$data" --json 2>/dev/null | grep -q '"result": "running"'; then break; fi
		if [ "$i" = 121 ]; then say "warning: a job of arkbox's start was still running after two minutes"; fi
		sleep 1
	done
	START_RSS=$(rss)
	hwm_reset
}

# stats DATA: (server stopped) `arkbox stats --json` as "data_blobs tree_blobs unique_bytes".
stats() {
	"$ARK" stats --repo "$1" --json 2>>"$W/logs/run$r-stats.log" | tee -a "$W/logs/run$r-stats.log" |
		awk -F': ' '{v = $2; gsub(/[ ,]/, "", v)} $1 ~ /"data_blobs"/ {d = v} $1 ~ /"tree_blobs"/ {t = v} $1 ~ /"unique_bytes"/ {u = v}
			END {if (d == "" || t == "" || u == "") exit 1; print d, t, u}' || die "arkbox stats failed (see $W/logs/run$r-stats.log)"
}

# verify_arkbox DATA DATASET ID...: (server stopped) each snapshot lists exactly
# the uploaded files with their sizes and mtimes (`put -p` keeps them).
verify_arkbox() {
	local data=$1 id
	shift
	for id in "$@"; do
		"$ARK" ls "$id" --repo "$data" --json >"$W/ls.json" 2>>"$W/logs/run$r-verify.log" ||
			die "arkbox ls $id failed (see $W/logs/run$r-verify.log)"
		python3 - "$W/ls.json" "$RANDOM_FILE" "$REAL_FILE" "$SMALL_DIR" <<'PY' || die "snapshot $id of run $r does not hold what was uploaded"
import json, os, sys
from datetime import datetime
ls, rnd, real, small = sys.argv[1:5]
want = {}
for name, src in (("/random.bin", rnd), ("/real.tar", real)):
    st = os.stat(src)
    want[name] = (st.st_size, int(st.st_mtime))
for d, _, files in os.walk(small):
    for f in files:
        p = os.path.join(d, f)
        st = os.lstat(p)
        want["/" + os.path.basename(small) + "/" + os.path.relpath(p, small)] = (st.st_size, int(st.st_mtime))
with open(ls) as f:
    got = {}
    for e in json.load(f):
        if e["type"] == "file":
            t = datetime.fromisoformat(e["mtime"].replace("Z", "+00:00"))
            got[e["path"]] = (e["size"], int(t.timestamp()))
if got != want:
    miss = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    diff = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    print(f"missing {len(miss)} {miss[:5]}, extra {len(extra)} {extra[:5]}, different {len(diff)} " +
          str([(k, want[k], got[k]) for k in diff[:5]]), file=sys.stderr)
    sys.exit(1)
PY
	done
}

# ---------------------------------------------------------------- data sets

tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}'; }
tree_files() { find "$1" -type f | wc -l; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }

# The large files and the small tree are made once and kept in the cache.
prepare_data() {
	mkdir -p "$CACHE/data"
	local bytes=$((BIG_MIB * 1048576))
	RANDOM_FILE=$CACHE/data/random-${BIG_MIB}MiB.bin
	if [ ! -f "$RANDOM_FILE" ]; then
		say "writing $BIG_MIB MiB from /dev/urandom (once)"
		head -c "$bytes" /dev/urandom >"$RANDOM_FILE.tmp"
		mv "$RANDOM_FILE.tmp" "$RANDOM_FILE"
	fi

	# Real data: the first BIG_MIB MiB of a tar (entries in name order) of the
	# /usr set that bench/run.sh prepares, or of /usr/lib and /usr/share.
	REAL_FILE=$CACHE/data/real-${BIG_MIB}MiB.tar
	if [ ! -f "$REAL_FILE" ]; then
		local usr=$CACHE/data/usr-1300MB
		rm -f "$REAL_FILE.tmp"
		if [ -d "$usr" ] && [ "$(tree_bytes "$usr")" -gt "$bytes" ]; then
			say "writing $BIG_MIB MiB of a tar of the usr set (once)"
			{ tar --sort=name -C "$CACHE/data" -cf - usr-1300MB 2>/dev/null || true; } | head -c "$bytes" >"$REAL_FILE.tmp"
			echo "tar --sort=name of $(basename "$usr") (bench/run.sh's /usr set), first $BIG_MIB MiB" >"$REAL_FILE.origin"
		else
			say "writing $BIG_MIB MiB of a tar of /usr/lib and /usr/share (once; bench/run.sh's usr set is not there)"
			{ tar --sort=name --ignore-failed-read -C / -cf - usr/lib usr/share 2>/dev/null || true; } | head -c "$bytes" >"$REAL_FILE.tmp"
			echo "tar --sort=name of /usr/lib /usr/share, first $BIG_MIB MiB" >"$REAL_FILE.origin"
		fi
		[ "$(stat -c %s "$REAL_FILE.tmp")" = "$bytes" ] || die "not enough real data for $BIG_MIB MiB"
		mv "$REAL_FILE.tmp" "$REAL_FILE"
	fi

	# Small files: the first NSMALL files (byte-wise path order) of at most
	# 64 KiB of the Go toolchain's sources that bench/run.sh fetches (go1.24.1),
	# or of this machine's $GOROOT/src.
	SMALL_DIR=$CACHE/data/small-$NSMALL
	if [ ! -d "$SMALL_DIR" ]; then
		local src=$CACHE/data/go1.24.1/src
		[ -d "$src" ] || src=$(go env GOROOT)/src
		say "copying $NSMALL small files of $src (once)"
		rm -rf "$SMALL_DIR.tmp"
		mkdir -p "$SMALL_DIR.tmp"
		(cd "$src" && find . -type f -size -65k ! -path $'*\n*' -printf '%P\n' | LC_ALL=C sort | awk -v n="$NSMALL" 'NR <= n') >"$SMALL_DIR.list"
		[ "$(wc -l <"$SMALL_DIR.list")" = "$NSMALL" ] || die "$src has fewer than $NSMALL files of at most 64 KiB"
		tar -C "$src" --verbatim-files-from -T "$SMALL_DIR.list" -cf - | tar -C "$SMALL_DIR.tmp" -xf -
		echo "first $NSMALL files ≤ 64 KiB of $(basename "$(dirname "$src")")/src" >"$SMALL_DIR.origin"
		rm -f "$SMALL_DIR.list"
		mv "$SMALL_DIR.tmp" "$SMALL_DIR"
	fi

	RANDOM_BYTES=$bytes
	REAL_BYTES=$bytes
	SMALL_BYTES=$(tree_bytes "$SMALL_DIR")
	SMALL_FILES=$(tree_files "$SMALL_DIR")
	say "data: $(basename "$RANDOM_FILE"); $(basename "$REAL_FILE") ($(cat "$REAL_FILE.origin")); small-$NSMALL: $SMALL_FILES files, $(mb "$SMALL_BYTES") MB ($(cat "$SMALL_DIR.origin"))"
}

# ---------------------------------------------------------------- measuring

cpu_busy() { awk '$1 == "cpu" {printf "%.0f\n", $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# server_ticks SERVER: CPU ticks used so far by the server. arkbox: the serve
# process. OpenSSH: sshd's reaped children (one process per login).
server_ticks() {
	if [ "$1" = arkbox ]; then
		awk '{print $14 + $15}' "/proc/$APID/stat"
	else
		local i
		# A connection is counted once sshd has reaped its process.
		for i in $(seq 50); do
			[ -z "$(ps -o pid= --ppid "$SPID")" ] && break
			sleep 0.1
		done
		awk '{print $16 + $17}' "/proc/$SPID/stat"
	fi
}

# repo_size DATA: bytes of arkbox's repository (the pool's disk folders and the
# repository folder; not catalog.db, a cache rebuilt from the objects).
repo_size() { du -sb --exclude=catalog.db "$1/repo" "$1/disks" | awk '{s += $1} END {printf "%.0f\n", s}'; }

# hwm_reset / hwm: peak RSS (KiB) of arkbox serve since the last reset. Writing
# 5 to clear_refs resets VmHWM (Linux 4.0+); where that fails the figure is the
# peak since start.
HWM_RESETS=1
hwm_reset() { echo 5 2>/dev/null >"/proc/$APID/clear_refs" || HWM_RESETS=0; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$APID/status"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$APID/status"; }

# timed OUT LOG CMD...: run CMD, output to LOG; sets OUT_WALL and OUT_CPU (user+sys
# of CMD and its children) and OTHERS (cores busy with other work meanwhile).
timed() {
	local log=$1
	shift
	local b0 b1
	b0=$(cpu_busy)
	if ! /usr/bin/time -f '%e %U %S' -o "$W/time.out" "$@" >>"$log" 2>&1; then
		echo "---- last lines of $log" >&2
		tail -n 20 "$log" >&2
		die "failed: $*"
	fi
	b1=$(cpu_busy)
	read -r T_WALL T_USER T_SYS < <(tail -n 1 "$W/time.out")
	T_OTHERS=$(awk -v b="$((b1 - b0))" -v hz="$CLK_TCK" -v u="$T_USER" -v s="$T_SYS" -v w="$T_WALL" \
		'BEGIN {x = (w > 0) ? (b / hz - u - s) / w : 0; printf "%.2f", (x < 0 ? 0 : x)}')
}

# upload SERVER DATASET SRC DST PUTCMD BYTES FILES: one timed upload and what makes
# it durable (arkbox: a snapshot; OpenSSH: sync), recorded in results.tsv.
upload() {
	local srv=$1 ds=$2 src=$3 dst=$4 put=$5 bytes=$6 files=$7
	local log=$W/logs/run$r-$ds-$srv.log batch=$W/batch-$ds-$srv
	local t0 tm t1 size0 size1 up_wall up_cpu others commit_wall peak=- stored=-
	printf '%s %s %s\n' "$put" "$src" "$dst" >"$batch"
	ssh_opts "$srv"
	sync
	if [ "$srv" = arkbox ]; then
		size0=$(repo_size "$DATA")
		hwm_reset
	fi
	t0=$(server_ticks "$srv")
	timed "$log" sftp "${SSHOPTS[@]}" -b "$batch" "$(login_of "$srv")"
	up_wall=$T_WALL up_cpu=$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN {print u + s}') others=$T_OTHERS
	tm=$(server_ticks "$srv")
	if [ "$srv" = arkbox ]; then
		: >"$W/snapshot.json"
		timed "$W/snapshot.json" "$ARK" snapshot backups --repo "$DATA" --json
		commit_wall=$T_WALL
		peak=$(hwm)
		if [ "$peak" -gt "$PEAK" ]; then PEAK=$peak; fi
		size1=$(repo_size "$DATA")
		stored=$((size1 - size0))
		cat "$W/snapshot.json" >>"$log"
		SNAPS[$ds]=$(sed -n 's/^ *"short_id": "\([0-9a-f]*\)".*/\1/p' "$W/snapshot.json")
		[ -n "${SNAPS[$ds]}" ] || die "arkbox snapshot printed no id (see $log)"
	else
		timed "$log" sync
		commit_wall=$T_WALL
	fi
	t1=$(server_ticks "$srv")
	local srv_up srv_then
	srv_up=$(awk -v t="$((tm - t0))" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
	srv_then=$(awk -v t="$((t1 - tm))" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$ds" "$srv" "$up_wall" "$up_cpu" "$srv_up" \
		"$commit_wall" "$peak" "$stored" "$others" "$bytes" "$files" "$srv_then" >>"$W/results.tsv"
	local line
	line=$(awk -v w="$up_wall" -v c="$commit_wall" -v b="$bytes" -v f="$files" -v su="$srv_up" -v st="$srv_then" \
		-v what="$([ "$srv" = arkbox ] && echo snapshot || echo sync)" \
		'BEGIN {printf "upload %6.2f s %7.1f MB/s", w, b / w / 1e6; if (f > 1) printf " %5.0f files/s", f / w
		printf "  %s %6.2f s  server cpu %.2f + %.2f s", what, c, su, st}')
	[ "$peak" = - ] || line="$line  rss $((peak / 1024)) MiB"
	[ "$stored" = - ] || line="$line  stored $(awk -v b="$stored" 'BEGIN {printf "%.1f", b / 1048576}') MiB"
	say "run $r/$RUNS $(printf '%-7s %-7s' "$ds" "$srv") $line  (others $others cores)"
}

# download SERVER SRC: one timed `sftp get` of the real-data file, checked
# against the source.
download() {
	local srv=$1 src=$2 log=$W/logs/run$r-get-$1.log out=$W/get-$1.tar
	printf 'get %s %s\n' "$src" "$out" >"$W/batch-get-$srv"
	ssh_opts "$srv"
	rm -f "$out"
	sync
	timed "$log" sftp "${SSHOPTS[@]}" -b "$W/batch-get-$srv" "$(login_of "$srv")"
	cmp "$REAL_FILE" "$out" || die "the real-data file downloaded from $srv differs"
	rm -f "$out"
	printf '%s\t%s\t%s\n' "$r" "$srv" "$T_WALL" >>"$W/download.tsv"
	say "run $r/$RUNS get     $(printf '%-7s' "$srv") $(awk -v w="$T_WALL" -v b="$REAL_BYTES" 'BEGIN {printf "download %6.2f s %7.1f MB/s", w, b / w / 1e6}')  (others $T_OTHERS cores)"
}

# read_path: the share filesystem's read of the real-data file, without SSH,
# against restic restoring it (each from its own repository on this disk).
read_path() {
	local log=$W/logs/run$r-read.log rr=$W/restic-restore share
	rm -rf "$W/restic" "$rr"
	RESTIC_REPOSITORY=$W/restic RESTIC_CACHE_DIR=$W/restic-cache "$RESTIC" init >>"$log" 2>&1 || die "restic init failed (see $log)"
	RESTIC_REPOSITORY=$W/restic RESTIC_CACHE_DIR=$W/restic-cache "$RESTIC" backup "$REAL_FILE" >>"$log" 2>&1 ||
		die "restic backup failed (see $log)"
	sync
	timed "$log" env RESTIC_REPOSITORY="$W/restic" RESTIC_CACHE_DIR="$W/restic-cache" "$RESTIC" restore latest --target "$rr"
	local restic_wall=$T_WALL restic_others=$T_OTHERS
	cmp "$REAL_FILE" "$rr$REAL_FILE" || die "restic restored a different file"
	rm -rf "$rr" "$W/restic" "$W/restic-cache"
	share=$(ARKBOX_BENCH_FILE=$REAL_FILE TMPDIR=$W "$SHAREFS_TEST" -test.run '^$' -test.bench '^BenchmarkReadClean$' \
		-test.benchtime 1x 2>&1 | tee -a "$log" |
		awk '/read=32KiB/ {for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") a = $i} /read=1024KiB/ {for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") b = $i}
			END {if (a == "" || b == "") exit 1; print a, b}') || die "the share read benchmark failed (see $log)"
	local s32 s1m
	read -r s32 s1m <<<"$share"
	printf '%s\t%s\t%s\t%s\n' "$r" "$restic_wall" "$s32" "$s1m" >>"$W/read.tsv"
	say "run $r/$RUNS read    restic restore $(awk -v w="$restic_wall" -v b="$REAL_BYTES" 'BEGIN {printf "%.2f s %.1f MB/s", w, b / w / 1e6}') (others $restic_others cores); arkbox share read $s32 MB/s by 32 KiB, $s1m MB/s by 1 MiB"
}

# verify_plain: the OpenSSH copies equal the sources (untimed).
verify_plain() {
	cmp "$RANDOM_FILE" "$PLAIN/random.bin" || die "OpenSSH copy of the random file differs"
	cmp "$REAL_FILE" "$PLAIN/real.tar" || die "OpenSSH copy of the real-data file differs"
	diff -r "$SMALL_DIR" "$PLAIN/$(basename "$SMALL_DIR")" >/dev/null || die "OpenSSH copy of the small tree differs"
}

# ---------------------------------------------------------------- main

ensure_tools
build_arkbox
RESTIC=$(build_peer restic github.com/restic/restic "$RESTIC_VERSION" ./cmd/restic)
prepare_data
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
W=$(mktemp -d "${TMPDIR:-/tmp}/arkbox-bench-sftp.XXXXXX")
mkdir -p "$W/logs" "$BENCH/out"
: >"$W/results.tsv"
: >"$W/rss.tsv"
: >"$W/again.tsv"
: >"$W/download.tsv"
: >"$W/read.tsv"
say "building the share read benchmark"
(cd "$ROOT" && go test -c -o "$W/sharefs.test" ./storage/sharefs) || die "building storage/sharefs's test binary failed"
SHAREFS_TEST=$W/sharefs.test
PROFILES=()
start_sshd
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "work folder $W; sshd on 127.0.0.1:$SPORT; $RUNS run(s); load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
say "warming the page cache"
cat "$RANDOM_FILE" "$REAL_FILE" >/dev/null
tar -C "$SMALL_DIR" -cf - . | wc -c >/dev/null

declare -A SNAPS=() # the id of each measured snapshot of the run
for ((r = 1; r <= RUNS; r++)); do
	DATA=$W/run$r/arkbox
	PLAIN=$W/run$r/openssh
	mkdir -p "$W/run$r" "$PLAIN"
	say "---- run $r of $RUNS: starting arkbox serve"
	start_arkbox "$DATA" "$W/logs/run$r-serve.log"
	START1=$START_RSS
	PEAK=0
	SNAPS=()
	if [ "$r" = 1 ]; then
		CIPHER_ARKBOX=$(negotiated arkbox)
		CIPHER_OPENSSH=$(negotiated openssh)
		say "ciphers: arkbox $CIPHER_ARKBOX, OpenSSH $CIPHER_OPENSSH"
	fi
	# Both servers take turns, the first one alternating from run to run.
	if ((r % 2)); then ORDER=(arkbox openssh); else ORDER=(openssh arkbox); fi
	for s in "${ORDER[@]}"; do
		if [ "$s" = arkbox ]; then d=/backups; else d=$PLAIN; fi
		upload "$s" random "$RANDOM_FILE" "$d/random.bin" "put -p" "$RANDOM_BYTES" 1
	done
	for s in "${ORDER[@]}"; do
		if [ "$s" = arkbox ]; then d=/backups; else d=$PLAIN; fi
		upload "$s" real "$REAL_FILE" "$d/real.tar" "put -p" "$REAL_BYTES" 1
	done
	for s in "${ORDER[@]}"; do
		if [ "$s" = arkbox ]; then d=/backups; else d=$PLAIN; fi
		download "$s" "$d/real.tar"
	done
	read_path
	# `put -r DIR FOLDER` into an existing folder makes FOLDER/small-N; the second
	# time it writes over the files of the first.
	for s in "${ORDER[@]}"; do
		if [ "$s" = arkbox ]; then d=/backups; else d=$PLAIN; fi
		upload "$s" small "$SMALL_DIR" "$d" "put -rp" "$SMALL_BYTES" "$SMALL_FILES"
	done
	[ $HWM_RESETS = 1 ] || PEAK=$(hwm)
	END_RSS=$(rss)
	# Between the two uploads of the tree the server is stopped for `arkbox stats`
	# (which needs the catalog the server holds), then started again.
	stop_arkbox
	st=$(stats "$DATA")
	read -r DATA0 TREE0 UNIQUE0 <<<"$st"
	serve_measured "$DATA" "$W/logs/run$r-serve-again.log" .again
	for s in "${ORDER[@]}"; do
		if [ "$s" = arkbox ]; then d=/backups; else d=$PLAIN; fi
		upload "$s" again "$SMALL_DIR" "$d" "put -rp" "$SMALL_BYTES" "$SMALL_FILES"
	done
	verify_plain
	[ $HWM_RESETS = 1 ] || { h=$(hwm); if [ "$h" -gt "$PEAK" ]; then PEAK=$h; fi; }
	stop_arkbox
	st=$(stats "$DATA")
	read -r DATA1 TREE1 UNIQUE1 <<<"$st"
	printf '%s\t%s\t%s\t%s\n' "$r" "$((DATA1 - DATA0))" "$((TREE1 - TREE0))" "$((UNIQUE1 - UNIQUE0))" >>"$W/again.tsv"
	printf '%s\t%s\t%s\t%s\n' "$r" "$START1" "$PEAK" "$END_RSS" >>"$W/rss.tsv"
	say "run $r/$RUNS arkbox serve RSS: $((START1 / 1024)) MiB after start, peak $((PEAK / 1024)) MiB while ingesting, $((END_RSS / 1024)) MiB after the first tree"
	say "run $r/$RUNS the unchanged tree again added $((DATA1 - DATA0)) data blobs, $((TREE1 - TREE0)) tree blobs, $((UNIQUE1 - UNIQUE0)) bytes before compression"
	verify_arkbox "$DATA" "${SNAPS[small]}" "${SNAPS[again]}"
	if [ $KEEP = 0 ] || ((r < RUNS)); then rm -rf "$PLAIN"; fi
	if [ $KEEP = 0 ]; then rm -rf "$DATA"; fi
done

if [ ${#PROFILES[@]} -gt 0 ]; then
	say "CPU profiles of arkbox serve: ${PROFILES[*]} (go tool pprof -top $ARK FILE)"
fi
OUT=$BENCH/out/sftp-$STAMP
{
	echo "SFTP ingest, $RUNS run(s), $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); load average at start $LOAD0"
	echo "arkbox $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown); client $(ssh -V 2>&1 | cut -d, -f1); cipher: arkbox $CIPHER_ARKBOX, OpenSSH $CIPHER_OPENSSH${EXTRA_OPTS[*]:+; sftp options: ${EXTRA_OPTS[*]}}"
	echo
	awk -F '\t' -v runs="$RUNS" -v rssfile="$W/rss.tsv" -v againfile="$W/again.tsv" -v hwmreset="$HWM_RESETS" \
		-v lrandom="$BIG_MIB MiB incompressible, 1 file" \
		-v lreal="$BIG_MIB MiB real data (tar), 1 file" \
		-v lsmall="$SMALL_FILES small files, $(mb "$SMALL_BYTES") MB" \
		-v lagain="the same tree again, unchanged" \
		-f "$BENCH/lib.awk" -f "$BENCH/sftp-report.awk" "$W/results.tsv"
	echo
	awk -F '\t' -v runs="$RUNS" -v bytes="$REAL_BYTES" -v label="$BIG_MIB MiB real data (tar), 1 file" \
		-v readfile="$W/read.tsv" -f "$BENCH/lib.awk" -f "$BENCH/read-report.awk" "$W/download.tsv"
} | tee "$OUT.md"
cp "$W/results.tsv" "$OUT.tsv"
say "results: bench/out/$(basename "$OUT").{md,tsv}"
if [ $KEEP = 1 ]; then say "kept $W"; fi
