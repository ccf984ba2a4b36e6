#!/usr/bin/env bash
# The appliance's boot test: boots the amd64 image of the boot test (built
# with image/vmtest/overlay.json: serve adopts three blank disks and
# snapshots every minute) under qemu — software emulation, UEFI through
# OVMF — with three blank disks attached as USB mass storage, and checks
# from the host, through forwarded ports:
#
#   boot 1: the kernel boots and attaches the USB disks, arkbox-hwlog lists
#           them, gokrazy's web interface answers, /perm is mounted; arkbox
#           serve adopts the three disks, creates its pool on them and
#           prints the admin password once (read from gokrazy's log of the
#           program); a file tree uploaded over SFTP (OpenSSH sftp) appears
#           complete in a snapshot under /backups/.snapshots/;
#   one more file is uploaded, and right after that the plug is pulled:
#           qemu quits without a shutdown;
#   boot 2: serve mounts the pool's disks by UUID (adopting nothing), and
#           the files downloaded from the live share (the last file
#           included) and from the snapshot match the originals; then a
#           clean power-off through gokrazy's web interface, in which serve
#           unmounts the pool's disks so that gokrazy can unmount /perm.
#
#   image/vmtest.sh [IMAGE]    (default: bin/vmtest/arkbox-amd64.img; `make vm-test` builds it)
#
# Environment: ARKBOX_IMAGE_WORK (where build.sh kept the web interface
# password), ARKBOX_VMTEST_TIMEOUT (seconds a step may take, default 300),
# ARKBOX_VMTEST_KEEP=1 keeps the scratch folder with the serial logs.
# Needs: qemu-system-x86_64, OVMF, curl, sftp, sshpass (scripts/vm-deps.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
img=${1:-bin/vmtest/arkbox-amd64.img}
work=${ARKBOX_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/arkbox-image}
timeout=${ARKBOX_VMTEST_TIMEOUT:-300}
pw=$(cat "$work/http-password.txt")
ndisks=3
ovmf=""
for f in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd /usr/share/qemu/OVMF.fd; do
	if [ -f "$f" ]; then
		ovmf=$f
		break
	fi
done
[ -n "$ovmf" ] || { echo "vmtest: OVMF not found (apt-get install ovmf)" >&2; exit 1; }
vars=${ovmf/CODE/VARS}
for tool in qemu-system-x86_64 curl sftp sshpass sha256sum python3; do
	command -v "$tool" >/dev/null || { echo "vmtest: $tool is missing (scripts/vm-deps.sh installs it)" >&2; exit 1; }
done

scratch=$(mktemp -d)
qpid=""
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -9 "$qpid" 2>/dev/null || true; fi
	if [ "${ARKBOX_VMTEST_KEEP:-}" = 1 ]; then echo "vmtest: logs kept in $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# A private copy of the image (sparse) and of the UEFI variables, so the
# test leaves the built image as it was; the copy persists across both boots.
cp --sparse=always "$img" "$scratch/disk.img"
[ "$vars" != "$ovmf" ] && [ -f "$vars" ] && cp "$vars" "$scratch/vars.fd"
for i in $(seq $ndisks); do truncate -s 1G "$scratch/usb$i.raw"; done

# The files to back up: small and empty files, nested folders, and files
# of several chunks, random so that nothing deduplicates or compresses.
up=$scratch/up
mkdir -p "$up/tree/docs/deep" "$up/tree/many" "$up/tree/empty dir"
echo "arkbox boot test $(date -u +%FT%TZ)" >"$up/tree/hello.txt"
: >"$up/tree/empty.txt"
head -c 1500000 /dev/urandom >"$up/tree/docs/one.bin"
head -c 3500000 /dev/urandom >"$up/tree/docs/deep/three.bin"
for i in $(seq 20); do echo "file $i $RANDOM" >"$up/tree/many/f$i.txt"; done
sums() { (cd "$1" && find tree -type f -print0 | sort -z | xargs -0 sha256sum); }
sums "$up" >"$scratch/want.sums"
nfiles=$(wc -l <"$scratch/want.sums")

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
count() { local c; c=$(grep -cE "$1" "$serial" 2>/dev/null || true); echo "${c:-0}"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

fail() {
	echo "vmtest: FAIL: $*" >&2
	echo "--- last lines of the serial console:" >&2
	tail -60 "$serial" >&2 || true
	exit 1
}

# wait_for WHAT COMMAND…: runs COMMAND every $every seconds (default 2)
# until it succeeds, at most $timeout seconds; prints how long it took
# since the boot started.
wait_for() {
	local what=$1
	shift
	local t=$(date +%s)
	until "$@"; do
		kill -0 "$qpid" 2>/dev/null || fail "boot $n: qemu exited while waiting for $what"
		[ $(($(date +%s) - t)) -le "$timeout" ] || fail "boot $n: $what: not after ${timeout}s"
		sleep "${every:-2}"
	done
	echo "vmtest: boot $n: $what after $(since "$t0")s"
}

serial_has() { [ "$(count "$1")" -ge "${2:-1}" ]; }
http_up() {
	local code
	code=$(curl -s -o "$scratch/status$n.html" -w '%{http_code}' -m 5 -u "gokrazy:$pw" "http://127.0.0.1:$httpport/" || true)
	[ "$code" = 200 ] && grep -q arkbox "$scratch/status$n.html"
}

# The admin password, from gokrazy's log of the program's standard output
# (the stream never ends: curl stops after a few seconds).
printed_password() {
	curl -s -m 4 -u "gokrazy:$pw" "http://127.0.0.1:$httpport/log?path=/user/arkbox&stream=stdout" >"$scratch/stdout$n.log" || true
	sed -nE 's/.*administrator login: user admin, password ([^ ]+).*/\1/p' "$scratch/stdout$n.log" | head -1
}
admin_password() {
	adminpw=$(printed_password)
	[ -n "$adminpw" ]
}

# sftp_batch FILE: runs an sftp batch as admin; the output goes to $out.
sftp_batch() {
	sshpass -p "$adminpw" sftp -P "$sshport" -o BatchMode=no -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o PreferredAuthentications=password -o PubkeyAuthentication=no \
		-o ConnectTimeout=30 -o LogLevel=ERROR -b "$1" admin@127.0.0.1 >"$out" 2>&1
}
sftp_up() {
	out=$scratch/probe$n.out
	echo "ls /" >"$scratch/probe.b"
	sftp_batch "$scratch/probe.b" && grep -q backups "$out"
}

boot() {
	n=$1
	serial=$scratch/serial$n.log
	httpport=$(freeport)
	sshport=$(freeport)
	monport=$(freeport)
	local fw=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf")
	[ -f "$scratch/vars.fd" ] && fw+=(-drive "if=pflash,format=raw,file=$scratch/vars.fd")
	local usb=(-device qemu-xhci,id=xhci)
	for i in $(seq $ndisks); do
		usb+=(-drive "if=none,id=usb$i,format=raw,file=$scratch/usb$i.raw"
			-device "usb-storage,bus=xhci.0,drive=usb$i,serial=ARKBOXTEST000$i")
	done
	t0=$(date +%s.%N)
	qemu-system-x86_64 -m 1024 -smp 2 -accel tcg -display none -no-reboot \
		"${fw[@]}" \
		-drive "if=none,id=sys,file=$scratch/disk.img,format=raw" -device virtio-blk-pci,drive=sys,bootindex=0 \
		"${usb[@]}" \
		-netdev "user,id=n,hostfwd=tcp:127.0.0.1:$httpport-:8080,hostfwd=tcp:127.0.0.1:$sshport-:22" -device e1000,netdev=n \
		-serial "file:$serial" -monitor "tcp:127.0.0.1:$monport,server,nowait" &
	qpid=$!
	wait_for "the kernel booting" serial_has "Linux version"
	wait_for "the kernel attaching $ndisks USB disks" serial_has 'sd [0-9:]+: \[sd[a-z]\] Attached SCSI (removable )?disk' $ndisks
	wait_for "arkbox-hwlog listing $ndisks USB disks" serial_has 'arkbox-hwlog: disk.*transport=usb.*serial=ARKBOXTEST000' $ndisks
	wait_for "gokrazy's web interface answering (200, hostname arkbox)" http_up
	grep -qE 'EXT4-fs \(vda4\): mounted filesystem .* r/w' "$serial" || fail "boot $n: /perm (vda4) was not mounted read-write"
	if grep -q 'EXT4-fs (vda4): recovery complete' "$serial"; then
		echo "vmtest: boot $n: /perm journal replayed after the power cut, mounted read-write"
	fi
	code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$httpport/" || true)
	[ "$code" = 401 ] || fail "boot $n: web interface answered $code without a password, want 401"
}

poweroff() {
	# "quit" on the monitor ends qemu at once: no shutdown, like pulling the plug.
	exec 3<>"/dev/tcp/127.0.0.1/$monport"
	echo quit >&3
	exec 3>&-
	for _ in $(seq 50); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
	kill -0 "$qpid" 2>/dev/null && kill -9 "$qpid"
	wait "$qpid" 2>/dev/null || true
	qpid=""
}

# snapshot_complete: lists /backups/.snapshots and checks whether the
# newest snapshot holds the whole tree (one taken while the upload ran
# holds part of it); sets $snap.
snapshot_complete() {
	out=$scratch/snaps.out
	echo "ls -1 /backups/.snapshots" >"$scratch/snaps.b"
	sftp_batch "$scratch/snaps.b" || return 1
	local newest
	newest=$(grep -E '^/backups/\.snapshots/[0-9T-]+' "$out" | sed 's|.*/||' | sort | tail -1)
	[ -n "$newest" ] && [ "$newest" != "${checked:-}" ] || return 1
	checked=$newest
	rm -rf "$scratch/snap1"
	mkdir -p "$scratch/snap1"
	printf 'lcd %s\nget -r /backups/.snapshots/%s/tree\n' "$scratch/snap1" "$newest" >"$scratch/get.b"
	out=$scratch/get1.out
	sftp_batch "$scratch/get.b" || return 1
	sums "$scratch/snap1" >"$scratch/snap1.sums"
	if cmp -s "$scratch/want.sums" "$scratch/snap1.sums"; then
		snap=$newest
		return 0
	fi
	echo "vmtest: boot $n: snapshot $newest holds $(wc -l <"$scratch/snap1.sums") of $nfiles files (taken during the upload): waiting for the next"
	return 1
}

start=$(date +%s)
boot 1
wait_for "arkbox adopting $ndisks blank disks" serial_has 'msg="disk adopted"' $ndisks
wait_for "arkbox creating its pool" serial_has 'msg="pool created"'
wait_for "arkbox serving" serial_has 'msg=serving'
wait_for "the admin password in gokrazy's log of arkbox" admin_password
wait_for "SFTP login as admin" sftp_up
t=$(date +%s.%N)
printf 'lcd %s\ncd /backups\nput -r tree\n' "$up" >"$scratch/put.b"
out=$scratch/put.out
sftp_batch "$scratch/put.b" || { cat "$out" >&2; fail "boot 1: upload"; }
echo "vmtest: boot 1: uploaded $nfiles files ($(du -sh "$up/tree" | cut -f1)) in $(since "$t")s"
checked=""
every=10 wait_for "a snapshot holding every uploaded file" snapshot_complete
echo "vmtest: boot 1: snapshot $snap verified ($nfiles files, SHA-256)"
# One more file, written just before the plug is pulled: what SFTP
# acknowledged must survive, snapshot or not.
head -c 1200000 /dev/urandom >"$scratch/late.bin"
printf 'put %s /backups/late.bin\n' "$scratch/late.bin" >"$scratch/late.b"
out=$scratch/late.out
sftp_batch "$scratch/late.b" || { cat "$out" >&2; fail "boot 1: upload of late.bin"; }
poweroff
echo "vmtest: power cut after boot 1 (qemu quit, no shutdown)"

boot 2
wait_for "arkbox mounting its $ndisks pool disks" serial_has 'msg="pool disk mounted"' $ndisks
wait_for "arkbox serving" serial_has 'msg=serving'
[ "$(count 'msg="disk adopted"')" = 0 ] || fail "boot 2: arkbox adopted a disk again"
echo "vmtest: boot 2: journals replayed after the power cut on $(count 'EXT4-fs \(sd[a-z]1\): recovery complete') of $ndisks pool disks"
[ -z "$(printed_password)" ] || fail "boot 2: the admin password was printed again"
t=$(date +%s.%N)
mkdir -p "$scratch/live2" "$scratch/snap2"
printf 'ls -1 /backups/.snapshots\nlcd %s\nget -r /backups/tree\nget /backups/late.bin\nlcd %s\nget -r /backups/.snapshots/%s/tree\n' \
	"$scratch/live2" "$scratch/snap2" "$snap" >"$scratch/get2.b"
out=$scratch/get2.out
wait_for "SFTP download of the live share and of snapshot $snap" sftp_batch "$scratch/get2.b"
sums "$scratch/live2" >"$scratch/live2.sums"
sums "$scratch/snap2" >"$scratch/snap2.sums"
cmp -s "$scratch/want.sums" "$scratch/live2.sums" || { diff "$scratch/want.sums" "$scratch/live2.sums" >&2 || true; fail "boot 2: the live share differs"; }
cmp -s "$scratch/want.sums" "$scratch/snap2.sums" || { diff "$scratch/want.sums" "$scratch/snap2.sums" >&2 || true; fail "boot 2: snapshot $snap differs"; }
cmp -s "$scratch/late.bin" "$scratch/live2/late.bin" || fail "boot 2: late.bin, written just before the power cut, differs or is missing"
echo "vmtest: boot 2: live share and snapshot $snap match the originals ($nfiles files, SHA-256; downloaded in $(since "$t")s)"
echo "vmtest: boot 2: late.bin, acknowledged just before the power cut, is intact"
# A clean power-off through gokrazy (as before the reboot of an update):
# serve stops and unmounts the pool's disks, so gokrazy can unmount /perm.
t=$(date +%s.%N)
curl -s -m 120 -X POST -u "gokrazy:$pw" "http://127.0.0.1:$httpport/poweroff" >"$scratch/poweroff.out" || true
for _ in $(seq 120); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$qpid" 2>/dev/null && fail "boot 2: still running 60 s after gokrazy's power-off"
wait "$qpid" 2>/dev/null || true
qpid=""
serial_has 'msg="pool disk unmounted"' $ndisks || fail "boot 2: serve did not unmount the pool's disks when stopped"
grep -q 'unmounting /perm failed' "$serial" && fail "boot 2: gokrazy could not unmount /perm: $(grep -m1 'unmounting /perm failed' "$serial")"
serial_has 'EXT4-fs \(vda4\): unmounting filesystem' || fail "boot 2: /perm was not unmounted before the power-off"
echo "vmtest: boot 2: clean power-off through gokrazy in $(since "$t")s: serve unmounted the pool disks, gokrazy unmounted /perm"
echo "vmtest: PASS in $(($(date +%s) - start))s (2 boots, hard power-off between them)"
