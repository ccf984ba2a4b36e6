#!/usr/bin/env bash
# bench/run.sh — arkbox side by side with restic and kopia on real data.
#
# What it measures, the data set and how to read the tables: bench/README.md.
#
#   bench/run.sh [--runs N] [--quick] [--peers-only] [--keep]
#
# Environment:
#   ARKBOX_BENCH_CACHE     cache for peer binaries, data sets and work dirs
#                          (default $HOME/.cache/arkbox-bench)
#   ARKBOX_BENCH_USR_MB    size cap of the /usr data set in MB (default 1300, --quick 300)
#   ARKBOX_BIN             use this arkbox binary instead of building ./appliance/cmd/arkbox
#   ARKBOX_RESTORE_LAYOUT  where `arkbox restore --target T` puts a snapshot of /a/b:
#                          "base" (T/b; default, what arkbox does), "full" (T/a/b, as restic
#                          does) or "flat" (the folder's contents in T, as kopia does)
#   RESTIC_PASSWORD, KOPIA_PASSWORD, ARKBOX_PASSWORD   (default: arkbox-bench)
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

RUNS=""
QUICK=0
PEERS_ONLY=0
KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
	--runs=*) RUNS=${1#--runs=}; shift ;;
	--quick) QUICK=1; shift ;;
	--peers-only) PEERS_ONLY=1; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
done
if [ -z "$RUNS" ]; then
	if [ $QUICK = 1 ]; then RUNS=1; else RUNS=3; fi
fi
case $RUNS in '' | *[!0-9]* | 0) echo "run.sh: --runs wants a positive integer" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
CACHE=${ARKBOX_BENCH_CACHE:-$HOME/.cache/arkbox-bench}
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh" # RESTIC_MODULE, RESTIC_VERSION, build_peer
KOPIA_MODULE=github.com/kopia/kopia
KOPIA_VERSION=${KOPIA_VERSION:-v0.22.3}
# Two consecutive Go releases and the dates their files are stamped with
# (release day, noon UTC), so that the data set is the same on every machine.
GO_OLD=go1.24.0 GO_OLD_DATE="2025-02-11 12:00:00 UTC"
GO_NEW=go1.24.1 GO_NEW_DATE="2025-03-04 12:00:00 UTC"
if [ $QUICK = 1 ]; then USR_MB=${ARKBOX_BENCH_USR_MB:-300}; else USR_MB=${ARKBOX_BENCH_USR_MB:-1300}; fi
ARKBOX_RESTORE_LAYOUT=${ARKBOX_RESTORE_LAYOUT:-base}

export RESTIC_PASSWORD=${RESTIC_PASSWORD:-arkbox-bench}
export KOPIA_PASSWORD=${KOPIA_PASSWORD:-arkbox-bench}
export ARKBOX_PASSWORD=${ARKBOX_PASSWORD:-arkbox-bench}

if [ $PEERS_ONLY = 1 ]; then TOOLS=(restic kopia); else TOOLS=(arkbox restic kopia); fi
CEILING="tar|zstd-1"

START=$SECONDS
say() { printf '[%3d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }
WORK=""
die() {
	printf 'run.sh: %s\n' "$*" >&2
	if [ -n "$WORK" ]; then printf 'run.sh: work dir kept for inspection: %s\n' "$WORK" >&2; fi
	exit 1
}

# ---------------------------------------------------------------- packages

ensure_packages() {
	local need=()
	[ -x /usr/bin/time ] || need+=(time)
	command -v zstd >/dev/null || need+=(zstd)
	for c in tar diff du find; do command -v $c >/dev/null || die "$c is missing"; done
	command -v go >/dev/null || die "go is missing"
	if [ ${#need[@]} = 0 ]; then return; fi
	say "installing ${need[*]}"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

# ---------------------------------------------------------------- binaries

# build_peer NAME MODULE VERSION PKG: build the module inside the module cache
# (`go install mod@v` is refused by the proxy) and cache the binary.
build_binaries() {
	RESTIC=$(build_peer restic $RESTIC_MODULE "$RESTIC_VERSION" ./cmd/restic)
	KOPIA=$(build_peer kopia $KOPIA_MODULE "$KOPIA_VERSION" .)
	ARKBOX=""
	[ $PEERS_ONLY = 1 ] && return
	if [ -n "${ARKBOX_BIN:-}" ]; then
		ARKBOX=$ARKBOX_BIN
		[ -x "$ARKBOX" ] || die "ARKBOX_BIN=$ARKBOX is not executable"
		return
	fi
	[ -d "$ROOT/appliance/cmd/arkbox" ] ||
		die "appliance/cmd/arkbox does not exist yet: run with --peers-only to measure the peers alone"
	say "building arkbox"
	(cd "$ROOT" && go build -trimpath -o bin/arkbox ./appliance/cmd/arkbox) || die "building arkbox failed"
	ARKBOX=$ROOT/bin/arkbox
}

# ---------------------------------------------------------------- data sets

tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}'; }
tree_files() { find "$1" -type f | wc -l; }

# prepare_toolchain VERSION DATE: the unpacked release golang.org/toolchain@v0.0.1-VERSION.OS-ARCH,
# copied out of the (read-only) module cache, every mtime set to DATE.
prepare_toolchain() {
	local v=$1 date=$2 dst=$CACHE/data/$1
	[ -d "$dst" ] && return
	local modcache os arch src
	modcache=$(go env GOMODCACHE)
	os=$(go env GOHOSTOS)
	arch=$(go env GOHOSTARCH)
	src=$modcache/golang.org/toolchain@v0.0.1-$v.$os-$arch
	if [ ! -d "$src" ]; then
		say "fetching toolchain $v through the module proxy"
		(cd "$CACHE" && GOWORK=off GOTOOLCHAIN=$v go version >/dev/null) || die "GOTOOLCHAIN=$v go version failed"
	fi
	[ -d "$src" ] || die "$src not found after GOTOOLCHAIN=$v go version"
	say "copying $v into the data cache"
	rm -rf "$dst.tmp"
	cp -r "$src" "$dst.tmp"
	chmod -R u+w "$dst.tmp"
	find "$dst.tmp" -exec touch -h -d "$date" {} +
	mv "$dst.tmp" "$dst"
}

# prepare_usr MB: a copy of /usr/lib and /usr/share capped at MB megabytes (10^6 bytes) of
# regular-file content. The selection (README, "The /usr set") is deterministic for a given
# machine: "units" are the entries two levels below /usr/lib and /usr/share (e.g.
# /usr/share/doc/bash, /usr/lib/x86_64-linux-gnu/libc.so.6), taken in byte-wise path order,
# alternating between the two roots so that each gets about half; a unit that does not fit
# in what is left of the cap is skipped. Regular files, directories and symlinks only.
prepare_usr() {
	local mb=$1 dst=$CACHE/data/usr-${1}MB
	[ -d "$dst" ] && return
	say "selecting a ${mb} MB copy of /usr/lib + /usr/share"
	rm -rf "$dst.tmp" "$dst.list"
	mkdir -p "$dst.tmp"
	find /usr/share /usr/lib \( -type f -o -type d -o -type l \) ! -path $'*\n*' ! -path $'*\t*' -printf '%y\t%s\t%p\n' 2>/dev/null |
		LC_ALL=C sort -t $'\t' -k3,3 >"$dst.all"
	LC_ALL=C awk -F '\t' -v cap="$mb" -f "$BENCH/select.awk" "$dst.all" "$dst.all" >"$dst.list"
	rm -f "$dst.all"
	(cd / && tar --no-recursion --verbatim-files-from --ignore-failed-read -T "$dst.list" -cf - 2>/dev/null) |
		tar -C "$dst.tmp" -xf -
	mv "$dst.list" "$dst.manifest"
	mv "$dst.tmp" "$dst"
}

prepare_data() {
	mkdir -p "$CACHE/data"
	prepare_toolchain $GO_OLD "$GO_OLD_DATE"
	prepare_toolchain $GO_NEW "$GO_NEW_DATE"
	prepare_usr "$USR_MB"
	USR=$CACHE/data/usr-${USR_MB}MB
	OLD=$CACHE/data/$GO_OLD
	NEW=$CACHE/data/$GO_NEW
	USR_BYTES=$(tree_bytes "$USR")
	USR_FILES=$(tree_files "$USR")
	OLD_BYTES=$(tree_bytes "$OLD")
	OLD_FILES=$(tree_files "$OLD")
	NEW_BYTES=$(tree_bytes "$NEW")
	NEW_FILES=$(tree_files "$NEW")
	USR_SHA=$(sha256sum <"$USR.manifest" | cut -c1-16)
	say "data: usr set $(mb "$USR_BYTES") MB in $USR_FILES files; $GO_OLD $(mb "$OLD_BYTES") MB in $OLD_FILES files; $GO_NEW $(mb "$NEW_BYTES") MB in $NEW_FILES files"
}

# warm DIR: read every file once so that the page cache holds the data set.
warm() { tar -C "$(dirname "$1")" -cf - "$(basename "$1")" | wc -c >/dev/null; }

# ---------------------------------------------------------------- measuring

mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
# arkbox's catalog.db is a cache (rebuilt from the objects by `arkbox repair
# catalog`), like the peers' caches, which live outside their repositories.
size_of() { du -sb --exclude=catalog.db "$@" | awk '{s += $1} END {printf "%.0f\n", s}'; }

# cpu_busy: CPU time (in clock ticks) the whole machine has spent busy since boot.
cpu_busy() { awk '$1 == "cpu" {printf "%.0f\n", $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# measure LOG CMD...: run CMD under GNU time, output to LOG; sets WALL UTIME STIME RSS (KiB),
# and OTHERS: how many cores, on average, were busy with other work during CMD.
measure() {
	local log=$1
	shift
	sync
	local busy0 busy1
	busy0=$(cpu_busy)
	if ! /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$@" >>"$log" 2>&1; then
		echo "---- last lines of $log" >&2
		tail -n 20 "$log" >&2
		die "failed: $*"
	fi
	busy1=$(cpu_busy)
	read -r WALL UTIME STIME RSS < <(tail -n 1 "$WORK/time.out")
	OTHERS=$(awk -v b="$((busy1 - busy0))" -v hz="$CLK_TCK" -v u="$UTIME" -v s="$STIME" -v w="$WALL" \
		'BEGIN {x = (w > 0) ? (b / hz - u - s) / w : 0; printf "%.2f", (x < 0 ? 0 : x)}')
}

# record SCENARIO TOOL RUN SOURCE_BYTES REPO_BYTES ADDED_BYTES: the figures of the last measure.
record() {
	local s=$1 t=$2 r=$3 src=$4 repo=$5 added=$6
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$t" "$WALL" "$UTIME" "$STIME" "$RSS" "$src" "$repo" "$added" "$OTHERS" >>"$WORK/results.tsv"
	local line
	line=$(awk -v w="$WALL" -v u="$UTIME" -v s="$STIME" -v m="$RSS" -v b="$src" \
		'BEGIN {printf "wall %7.2f s  cpu %7.2f s  rss %6.0f MiB  %7.1f MB/s", w, u + s, m / 1024, (w > 0 ? b / w / 1e6 : 0)}')
	[ "$repo" = - ] || line="$line  repo $(mib "$repo") MiB"
	[ "$added" = - ] || line="$line  added $(mib "$added") MiB"
	say "run $r/$RUNS $s $(printf '%-10s' "$t") $line  (others $OTHERS cores)"
}

# ---------------------------------------------------------------- tool adapters
#
# Each tool gets a directory D per scenario: D/repo is the repository (plus D/disk1..3 for the
# arkbox pool), everything else the tool writes (cache, config, logs) stays in D too.

# tool_env TOOL D: sets TENV, the `env` prefix for every command of TOOL on D.
tool_env() {
	local t=$1 d=$2
	TENV=(env HOME="$d/home" XDG_CACHE_HOME="$d/home/.cache" XDG_CONFIG_HOME="$d/home/.config")
	case $t in
	restic) TENV+=(RESTIC_REPOSITORY="$d/repo" RESTIC_CACHE_DIR="$d/cache") ;;
	kopia) TENV+=(KOPIA_CONFIG_PATH="$d/config/repository.config" KOPIA_CACHE_DIRECTORY="$d/cache"
		KOPIA_LOG_DIR="$d/logs" KOPIA_CHECK_FOR_UPDATES=false) ;;
	arkbox) ;;
	esac
}

# tool_init TOOL D LOG [DISK...]: a fresh repository (untimed).
tool_init() {
	local t=$1 d=$2 log=$3
	shift 3
	rm -rf "$d"
	mkdir -p "$d/home"
	tool_env "$t" "$d"
	case $t in
	restic) "${TENV[@]}" "$RESTIC" init >>"$log" 2>&1 ;;
	kopia)
		"${TENV[@]}" "$KOPIA" repository create filesystem --path "$d/repo" >>"$log" 2>&1 &&
			"${TENV[@]}" "$KOPIA" policy set --global --compression=zstd >>"$log" 2>&1
		;;
	arkbox)
		local disks=() x
		for x in "$@"; do mkdir -p "$x" && disks+=(--disk "$x"); done
		"${TENV[@]}" "$ARKBOX" init --repo "$d/repo" "${disks[@]}" >>"$log" 2>&1
		;;
	esac || { tail -n 20 "$log" >&2; die "$t: init of $d/repo failed"; }
}

# backup_cmd TOOL D SRC NAME: sets CMD, the backup of SRC (one folder) under the name NAME.
backup_cmd() {
	local t=$1 d=$2 src=$3 name=$4
	tool_env "$t" "$d"
	case $t in
	restic) CMD=("${TENV[@]}" "$RESTIC" backup "$src") ;;
	kopia) CMD=("${TENV[@]}" "$KOPIA" snapshot create "$src") ;;
	arkbox) CMD=("${TENV[@]}" "$ARKBOX" backup --repo "$d/repo" --source-name "$name" "$src") ;;
	esac
}

# restore_cmd TOOL D TARGET LOG: sets CMD, the restore of the latest snapshot into TARGET.
restore_cmd() {
	local t=$1 d=$2 target=$3 log=$4
	tool_env "$t" "$d"
	case $t in
	restic) CMD=("${TENV[@]}" "$RESTIC" restore latest --target "$target") ;;
	kopia)
		local id
		id=$("${TENV[@]}" "$KOPIA" snapshot list --all --json 2>>"$log" | grep -o '"id":"[0-9a-f]*"' | tail -n 1 | cut -d '"' -f 4)
		[ -n "$id" ] || die "kopia: no snapshot found in $d/repo"
		CMD=("${TENV[@]}" "$KOPIA" restore "$id" "$target")
		;;
	arkbox) CMD=("${TENV[@]}" "$ARKBOX" restore latest --repo "$d/repo" --target "$target") ;;
	esac
}

# restored_root TOOL TARGET SRC: where the restored copy of the folder SRC is.
# restic recreates SRC's absolute path under TARGET; kopia puts the folder's contents into
# TARGET; arkbox puts the folder under its own name into TARGET (ARKBOX_RESTORE_LAYOUT=base),
# or as one of the other two (full, flat).
restored_root() {
	local t=$1 target=$2 src=$3
	case $t in
	restic) echo "$target$src" ;;
	kopia) echo "$target" ;;
	arkbox)
		case $ARKBOX_RESTORE_LAYOUT in
		base) echo "$target/$(basename "$src")" ;;
		full) echo "$target$src" ;;
		flat) echo "$target" ;;
		*) die "ARKBOX_RESTORE_LAYOUT must be base, full or flat" ;;
		esac
		;;
	esac
}

# arkbox_report D LOG: keep `arkbox snapshots/stats --json` in the log (exercises the contract).
arkbox_report() {
	local d=$1 log=$2
	tool_env arkbox "$d"
	{
		echo "---- arkbox snapshots --json"
		"${TENV[@]}" "$ARKBOX" snapshots --repo "$d/repo" --json
		echo "---- arkbox stats --json"
		"${TENV[@]}" "$ARKBOX" stats --repo "$d/repo" --json
	} >>"$log" 2>&1 || say "warning: arkbox snapshots/stats --json failed (see $log)"
}

# listing DIR: every entry below DIR with its type and mode; files with size and mtime,
# symlinks with their target.
listing() {
	(cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %m %s %T@\n' \) -o \( -type l -printf '%P l %l\n' \) \
		-o -printf '%P %y %m\n' | LC_ALL=C sort)
}

# verify_restore SRC COPY LABEL: contents (diff -r) and the listing of every entry.
verify_restore() {
	local src=$1 copy=$2 label=$3
	[ -d "$copy" ] || die "$label: restored tree $copy does not exist (restore layout?)"
	if ! diff -r --no-dereference "$src" "$copy" >"$WORK/diff.out" 2>&1; then
		head -n 20 "$WORK/diff.out" >&2
		die "$label: restored tree differs from the source ($(wc -l <"$WORK/diff.out") lines of diff -r)"
	fi
	listing "$src" >"$WORK/list.src"
	listing "$copy" >"$WORK/list.copy"
	if ! diff "$WORK/list.src" "$WORK/list.copy" >"$WORK/diff.out"; then
		head -n 20 "$WORK/diff.out" >&2
		die "$label: restored tree differs from the source in types, modes, sizes, mtimes or symlink targets"
	fi
}

# fill DIR FROM: make DIR an exact copy of FROM (same path, so parent detection works).
fill() {
	mkdir -p "$1"
	find "$1" -mindepth 1 -delete
	cp -a "$2/." "$1/"
}

# ---------------------------------------------------------------- scenarios

# Tool order rotates from run to run so that no tool always goes first.
order() {
	local r=$1 n=${#TOOLS[@]} i
	for ((i = 0; i < n; i++)); do echo "${TOOLS[$(((i + r - 1) % n))]}"; done
}

ceiling() {
	local s=$1 r=$2 dir=$3 bytes=$4
	measure "$WORK/logs/$r-$s-ceiling.log" bash -c 'tar -C "$1" -cf - "$2" | zstd -1 -T0 >/dev/null' _ "$(dirname "$dir")" "$(basename "$dir")"
	record "$s" "$CEILING" "$r" "$bytes" - -
}

scenario1() {
	local r=$1 t d log
	for t in $(order "$r"); do
		d=$WORK/s1/$t
		log=$WORK/logs/$r-s1-$t.log
		tool_init "$t" "$d" "$log"
		backup_cmd "$t" "$d" "$USR" usr
		measure "$log" "${CMD[@]}"
		record s1 "$t" "$r" "$USR_BYTES" "$(size_of "$d/repo")" -
		if [ "$t" = arkbox ]; then arkbox_report "$d" "$log"; fi
		if [ $KEEP = 0 ]; then rm -rf "$d"; fi
	done
	ceiling s1 "$r" "$USR" "$USR_BYTES"
}

# Scenario 5 (arkbox only): scenario 1 into a 2+1 pool over three folders.
scenario5() {
	local r=$1 d=$WORK/s5/arkbox log=$WORK/logs/$r-s5-arkbox.log
	tool_init arkbox "$d" "$log" "$d/disk1" "$d/disk2" "$d/disk3"
	backup_cmd arkbox "$d" "$USR" usr
	measure "$log" "${CMD[@]}"
	record s5 arkbox-2+1 "$r" "$USR_BYTES" "$(size_of "$d/repo" "$d/disk1" "$d/disk2" "$d/disk3")" -
	arkbox_report "$d" "$log"
	if [ $KEEP = 0 ]; then rm -rf "$d"; fi
}

# Scenarios 2-4 share one repository per tool and one source folder for all tools.
scenario234() {
	local r=$1 t d log before after src=$WORK/toolchain/src
	declare -A base=()
	for t in $(order "$r"); do tool_init "$t" "$WORK/s2/$t" "$WORK/logs/$r-s2-$t.log"; done

	# 2. go1.24.0, then go1.24.1 over it, into the same repository.
	fill "$src" "$OLD"
	warm "$src"
	for t in $(order "$r"); do
		d=$WORK/s2/$t
		log=$WORK/logs/$r-s2-$t.log
		backup_cmd "$t" "$d" "$src" toolchain
		measure "$log" "${CMD[@]}"
		base[$t]=$(size_of "$d/repo")
		record s2-first "$t" "$r" "$OLD_BYTES" "${base[$t]}" -
	done
	fill "$src" "$NEW"
	warm "$src"
	for t in $(order "$r"); do
		d=$WORK/s2/$t
		log=$WORK/logs/$r-s2-$t.log
		backup_cmd "$t" "$d" "$src" toolchain
		measure "$log" "${CMD[@]}"
		after=$(size_of "$d/repo")
		record s2 "$t" "$r" "$NEW_BYTES" "$after" $((after - base[$t]))
	done
	ceiling s2 "$r" "$src" "$NEW_BYTES"

	# 3. the same tree again, unchanged.
	for t in $(order "$r"); do
		d=$WORK/s2/$t
		log=$WORK/logs/$r-s3-$t.log
		before=$(size_of "$d/repo")
		backup_cmd "$t" "$d" "$src" toolchain
		measure "$log" "${CMD[@]}"
		after=$(size_of "$d/repo")
		record s3 "$t" "$r" "$NEW_BYTES" "$after" $((after - before))
		if [ "$t" = arkbox ]; then arkbox_report "$d" "$log"; fi
	done

	# 4. restore of the latest snapshot into an empty folder.
	for t in $(order "$r"); do
		d=$WORK/s2/$t
		log=$WORK/logs/$r-s4-$t.log
		rm -rf "$d/restore"
		mkdir -p "$d/restore"
		restore_cmd "$t" "$d" "$d/restore" "$log"
		measure "$log" "${CMD[@]}"
		record s4 "$t" "$r" "$NEW_BYTES" - -
		verify_restore "$src" "$(restored_root "$t" "$d/restore" "$src")" "$t restore (run $r)"
		rm -rf "$d/restore"
	done
	if [ $KEEP = 0 ]; then rm -rf "$WORK/s2"; fi
}

# ---------------------------------------------------------------- report

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

write_meta() {
	local arkbox_version=null
	if [ -n "$ARKBOX" ]; then
		arkbox_version=$(json_str "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)")
	fi
	cat >"$WORK/meta.json" <<EOF
  "timestamp": $(json_str "$STAMP"),
  "command": $(json_str "bench/run.sh $ARGS"),
  "runs": $RUNS,
  "quick": $([ $QUICK = 1 ] && echo true || echo false),
  "host": {"cpus": $(nproc), "cpu": $(json_str "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"), "mem_kib": $(awk '/^MemTotal/ {print $2}' /proc/meminfo), "kernel": $(json_str "$(uname -r)"), "go": $(json_str "$(go env GOVERSION)")},
  "tools": {"arkbox": $arkbox_version, "restic": $(json_str "$RESTIC_VERSION"), "kopia": $(json_str "$KOPIA_VERSION"), "kopia_compression": "zstd", "restic_compression": "auto", "arkbox_restore_layout": $(json_str "$ARKBOX_RESTORE_LAYOUT")},
  "datasets": {
    "usr": {"cap_mb": $USR_MB, "bytes": $USR_BYTES, "files": $USR_FILES, "manifest_sha256_16": $(json_str "$USR_SHA")},
    "toolchain_old": {"version": $(json_str "$GO_OLD"), "bytes": $OLD_BYTES, "files": $OLD_FILES},
    "toolchain_new": {"version": $(json_str "$GO_NEW"), "bytes": $NEW_BYTES, "files": $NEW_FILES}
  },
EOF
}

# ---------------------------------------------------------------- main

ARGS="--runs $RUNS"
if [ $QUICK = 1 ]; then ARGS="$ARGS --quick"; fi
if [ $PEERS_ONLY = 1 ]; then ARGS="$ARGS --peers-only"; fi
if [ $KEEP = 1 ]; then ARGS="$ARGS --keep"; fi
ensure_packages
mkdir -p "$CACHE"
build_binaries
prepare_data

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$CACHE/work/$STAMP
mkdir -p "$WORK/logs" "$BENCH/out"
: >"$WORK/results.tsv"
free_kb=$(df -Pk "$CACHE" | awk 'NR == 2 {print $4}')
[ "$free_kb" -gt $((4 * (USR_BYTES + NEW_BYTES) / 1024)) ] ||
	say "warning: little free space in $CACHE ($((free_kb / 1024)) MiB)"
say "work dir $WORK; tools: ${TOOLS[*]}; $RUNS run(s)"
say "warming the page cache"
warm "$USR"
warm "$OLD"
warm "$NEW"

for ((r = 1; r <= RUNS; r++)); do
	say "---- run $r of $RUNS: scenario 1 (initial backup of the usr set)"
	scenario1 "$r"
	if [ $PEERS_ONLY = 0 ]; then
		say "---- run $r of $RUNS: scenario 5 (arkbox 2+1 pool)"
		scenario5 "$r"
	fi
	say "---- run $r of $RUNS: scenarios 2-4 (toolchain $GO_OLD -> $GO_NEW, rescan, restore)"
	scenario234 "$r"
done

write_meta
OUT=$BENCH/out/results-$STAMP
awk -F '\t' -v json="$OUT.json" -v meta="$WORK/meta.json" -v runs="$RUNS" -v cpus="$(nproc)" \
	-v usr="usr set $(mb "$USR_BYTES") MB, $USR_FILES files" \
	-v old="$GO_OLD $(mb "$OLD_BYTES") MB" -v new="$GO_NEW $(mb "$NEW_BYTES") MB, $NEW_FILES files" \
	-f "$BENCH/lib.awk" -f "$BENCH/report.awk" "$WORK/results.tsv" | tee "$OUT.txt"
cp "$WORK/results.tsv" "$OUT.tsv"
say "results: bench/out/$(basename "$OUT").{txt,json,tsv}"
if [ $KEEP = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
