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
#           included) and from the snapshot match the originals;
#   update: `gok update` (image/update.sh: the instance folder build.sh
#           used, through the forwarded port of the web interface) pushes a
#           new build of the product image (config.json without the test's
#           overlay, its own build id); gokrazy stops serve, which unmounts
#           the pool's disks, unmounts /perm and starts the new kernel from
#           the other root partition (kexec, the same qemu process);
#   boot 3: the new build runs (gokrazy's build timestamp, arkbox's build
#           id, serve's command line without adoption), serve mounts the
#           same disks by UUID, /perm is the same file system with the same
#           SSH host key and configuration, the files and the snapshot
#           download bit-identical again; then a clean power-off through
#           gokrazy's web interface, in which serve unmounts the pool's
#           disks so that gokrazy can unmount /perm.
#
#   image/vmtest.sh [IMAGE]    (default: bin/vmtest/arkbox-amd64.img; `make vm-test` builds it)
#
# With ARKBOX_VMTEST_BOARD=pi it boots the Raspberry Pi image instead
# (default bin/vmtest/arkbox-rpi.img, built with image/vmtest/overlay-pi.json)
# on qemu's raspi3b — the BCM2837 of a Pi 3B and of a Pi 2B v1.2 — with the
# kernel, device tree and command line of the image's boot partition (the
# Pi 2B's tree: the Pi 3's gives the console UART to Bluetooth), the three
# disks and a USB network adapter behind a USB hub on the SoC's controller:
# boots 1 and 2 as above, then a clean power-off. The update is not
# exercised there: on a Pi the firmware picks the root partition, and qemu
# loads the kernel itself. The SoC's watchdog is left out
# (initcall_blacklist): qemu's model of it resets the machine as soon as
# gokrazy arms it.
#
# Environment: ARKBOX_IMAGE_WORK (where build.sh kept the web interface
# password and gok's instance folder), ARKBOX_VMTEST_TIMEOUT (seconds a
# step may take, default 300), ARKBOX_VMTEST_KEEP=1 keeps the scratch
# folder with the serial logs.
# Needs: qemu-system-x86_64 (qemu-system-aarch64 and mtools for the Pi),
# OVMF, curl, sftp, ssh-keyscan, sshpass (scripts/vm-deps.sh), and Go for
# the update's build.
set -euo pipefail

cd "$(dirname "$0")/.."
board=${ARKBOX_VMTEST_BOARD:-pc}
case $board in
pc)
	img=${1:-bin/vmtest/arkbox-amd64.img}
	permdev=vda4
	;;
pi)
	img=${1:-bin/vmtest/arkbox-rpi.img}
	permdev=mmcblk0p4
	;;
*)
	echo "vmtest: unknown board $board (pc or pi)" >&2
	exit 2
	;;
esac
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
[ -n "$ovmf" ] || [ "$board" = pi ] || { echo "vmtest: OVMF not found (apt-get install ovmf)" >&2; exit 1; }
vars=${ovmf/CODE/VARS}
tools=(curl sftp ssh-keyscan sshpass sha256sum python3 setsid go)
if [ "$board" = pi ]; then tools+=(qemu-system-aarch64 mcopy); else tools+=(qemu-system-x86_64); fi
for tool in "${tools[@]}"; do
	command -v "$tool" >/dev/null || { echo "vmtest: $tool is missing (scripts/vm-deps.sh installs it)" >&2; exit 1; }
done

scratch=$(mktemp -d)
qpid=""
gokpid=""
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -9 "$qpid" 2>/dev/null || true; fi
	if [ -n "$gokpid" ] && kill -0 "$gokpid" 2>/dev/null; then kill -- -"$gokpid" 2>/dev/null || true; fi
	if [ "${ARKBOX_VMTEST_KEEP:-}" = 1 ]; then echo "vmtest: logs kept in $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# A private copy of the image (sparse) and of the UEFI variables, so the
# test leaves the built image as it was; the copy persists across the boots.
cp --sparse=always "$img" "$scratch/disk.img"
[ "$board" = pc ] && [ "$vars" != "$ovmf" ] && [ -f "$vars" ] && cp "$vars" "$scratch/vars.fd"
for i in $(seq $ndisks); do truncate -s 1G "$scratch/usb$i.raw"; done
if [ "$board" = pi ]; then
	# What the Pi's firmware would load from the boot partition (the
	# first MBR partition, FAT): the kernel, the device tree, the command
	# line.
	bootoff=$(python3 -c 'import struct, sys
mbr = open(sys.argv[1], "rb").read(512)
print(struct.unpack("<I", mbr[454:458])[0] * 512)' "$img")
	for f in vmlinuz bcm2710-rpi-2-b.dtb cmdline.txt; do
		mcopy -n -i "$img@@$bootoff" "::$f" "$scratch/$f" || { echo "vmtest: no $f in the image's boot partition" >&2; exit 1; }
	done
	# The firmware turns console=serial0 into the UART's device name, and
	# so does the test.
	cmdline="$(tr -d '\n' <"$scratch/cmdline.txt" | sed 's/console=serial0/console=ttyAMA0/') initcall_blacklist=bcm2835_wdt_driver_init"
fi

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
# The serial log of the current boot: lines from $from on (boot 3 goes on
# in boot 2's file, after the kexec), without the console's carriage
# returns. (|| true: a reader that stops early, grep -q, ends it with SIGPIPE.)
from=1
log_now() { { tail -n "+$from" "$serial" 2>/dev/null | tr -d '\r'; } || true; }
count() { local c; c=$(log_now | grep -cE "$1" || true); echo "${c:-0}"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

fail() {
	echo "vmtest: FAIL: $*" >&2
	echo "--- last lines of the serial console:" >&2
	tail -60 "$serial" >&2 || true
	exit 1
}
# gok's log, with the instance's password (in the update URL) hidden.
goklog() { sed -E 's/gokrazy:[^@]*@/gokrazy:***@/g' "$scratch/update.log"; }

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
	from=1
	httpport=$(freeport)
	sshport=$(freeport)
	monport=$(freeport)
	local net="user,id=n,hostfwd=tcp:127.0.0.1:$httpport-:8080,hostfwd=tcp:127.0.0.1:$sshport-:22"
	t0=$(date +%s.%N)
	if [ "$board" = pi ]; then
		# Behind a hub, as on a real Pi 2/3: the disks on ports 1-3, the
		# network adapter (usb0, see overlay-pi.json) on port 4.
		local usb=(-device usb-hub,port=1)
		for i in $(seq $ndisks); do
			usb+=(-drive "if=none,id=usb$i,format=raw,file=$scratch/usb$i.raw"
				-device "usb-storage,drive=usb$i,port=1.$i,serial=ARKBOXTEST000$i")
		done
		qemu-system-aarch64 -machine raspi3b -m 1G -display none -no-reboot \
			-kernel "$scratch/vmlinuz" -dtb "$scratch/bcm2710-rpi-2-b.dtb" -append "$cmdline" \
			-drive "if=sd,file=$scratch/disk.img,format=raw" \
			"${usb[@]}" -netdev "$net" -device usb-net,netdev=n,port=1.4 \
			-serial "file:$serial" -monitor "tcp:127.0.0.1:$monport,server,nowait" \
			>"$scratch/qemu$n.log" 2>&1 & # (its USB network adapter complains of every unknown request)
	else
		local fw=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf")
		[ -f "$scratch/vars.fd" ] && fw+=(-drive "if=pflash,format=raw,file=$scratch/vars.fd")
		local usb=(-device qemu-xhci,id=xhci)
		for i in $(seq $ndisks); do
			usb+=(-drive "if=none,id=usb$i,format=raw,file=$scratch/usb$i.raw"
				-device "usb-storage,bus=xhci.0,drive=usb$i,serial=ARKBOXTEST000$i")
		done
		qemu-system-x86_64 -m 1024 -smp 2 -accel tcg -display none -no-reboot \
			"${fw[@]}" \
			-drive "if=none,id=sys,file=$scratch/disk.img,format=raw" -device virtio-blk-pci,drive=sys,bootindex=0 \
			"${usb[@]}" \
			-netdev "$net" -device e1000,netdev=n \
			-serial "file:$serial" -monitor "tcp:127.0.0.1:$monport,server,nowait" &
	fi
	qpid=$!
	boot_checks
}

# boot_checks: what every boot must show, from the kernel to gokrazy's web
# interface and /perm.
boot_checks() {
	wait_for "the kernel booting" serial_has "Linux version"
	wait_for "the kernel attaching $ndisks USB disks" serial_has 'sd [0-9:]+: \[sd[a-z]\] Attached SCSI (removable )?disk' $ndisks
	wait_for "arkbox-hwlog listing $ndisks USB disks" serial_has 'arkbox-hwlog: disk.*transport=usb.*serial=ARKBOXTEST000' $ndisks
	wait_for "gokrazy's web interface answering (200, hostname arkbox)" http_up
	log_now | grep -qE "EXT4-fs \\($permdev\\): mounted filesystem .* r/w" || fail "boot $n: /perm ($permdev) was not mounted read-write"
	if log_now | grep -q "EXT4-fs ($permdev): recovery complete"; then
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

# verify_data AFTER: downloads the live share (the tree and late.bin) and
# the snapshot, and compares them with the originals.
verify_data() {
	local t
	t=$(date +%s.%N)
	mkdir -p "$scratch/live$n" "$scratch/snap$n"
	printf 'ls -1 /backups/.snapshots\nlcd %s\nget -r /backups/tree\nget /backups/late.bin\nlcd %s\nget -r /backups/.snapshots/%s/tree\n' \
		"$scratch/live$n" "$scratch/snap$n" "$snap" >"$scratch/get$n.b"
	out=$scratch/get$n.out
	wait_for "SFTP download of the live share and of snapshot $snap" sftp_batch "$scratch/get$n.b"
	sums "$scratch/live$n" >"$scratch/live$n.sums"
	sums "$scratch/snap$n" >"$scratch/snap$n.sums"
	cmp -s "$scratch/want.sums" "$scratch/live$n.sums" || { diff "$scratch/want.sums" "$scratch/live$n.sums" >&2 || true; fail "boot $n: the live share differs after $1"; }
	cmp -s "$scratch/want.sums" "$scratch/snap$n.sums" || { diff "$scratch/want.sums" "$scratch/snap$n.sums" >&2 || true; fail "boot $n: snapshot $snap differs after $1"; }
	cmp -s "$scratch/late.bin" "$scratch/live$n/late.bin" || fail "boot $n: late.bin, written just before the power cut, differs or is missing after $1"
	echo "vmtest: boot $n: live share and snapshot $snap match the originals after $1 ($nfiles files, SHA-256; downloaded in $(since "$t")s)"
	echo "vmtest: boot $n: late.bin, acknowledged just before the power cut, is intact"
}

# clean_poweroff: a clean power-off through gokrazy (as before the reboot
# of an update): serve stops and unmounts the pool's disks, so gokrazy can
# unmount /perm.
clean_poweroff() {
	local t
	t=$(date +%s.%N)
	curl -s -m 120 -X POST -u "gokrazy:$pw" "http://127.0.0.1:$httpport/poweroff" >"$scratch/poweroff.out" || true
	for _ in $(seq 240); do
		kill -0 "$qpid" 2>/dev/null || break
		# qemu's raspi3b has no power switch: the kernel halts and qemu
		# keeps running.
		[ "$board" = pi ] && serial_has 'reboot: (Power down|Power off not available)' && { kill -9 "$qpid"; wait "$qpid" 2>/dev/null || true; break; }
		sleep 0.5
	done
	kill -0 "$qpid" 2>/dev/null && fail "boot $n: still running 120 s after gokrazy's power-off"
	wait "$qpid" 2>/dev/null || true
	qpid=""
	serial_has 'msg="pool disk unmounted"' $ndisks || fail "boot $n: serve did not unmount the pool's disks when stopped"
	log_now | grep -q 'unmounting /perm failed' && fail "boot $n: gokrazy could not unmount /perm: $(log_now | grep -m1 'unmounting /perm failed')"
	serial_has "EXT4-fs \\($permdev\\): unmounting filesystem" || fail "boot $n: /perm was not unmounted before the power-off"
	echo "vmtest: boot $n: clean power-off through gokrazy in $(since "$t")s: serve unmounted the pool disks, gokrazy unmounted /perm"
}

# status_json [PATH]: gokrazy's status (of the program PATH) as JSON;
# jfield NAME: a field of it (a list joined by spaces).
status_json() {
	curl -sf -m 5 -u "gokrazy:$pw" -H 'Accept: application/json' "http://127.0.0.1:$httpport/${1:+status?path=$1}"
}
jfield() {
	python3 -c 'import json, sys
v = json.load(sys.stdin)[sys.argv[1]]
print(" ".join(v) if isinstance(v, list) else v)' "$1"
}
# What must stay the same across the update: the pool's disks, the file
# system of /perm, serve's SSH host key.
disk_uuids() { log_now | sed -nE 's/.*msg="pool disk mounted" fs_uuid=([0-9a-f-]+).*/\1/p' | sort -u; }
perm_uuid() { log_now | sed -nE "s/.*EXT4-fs \\($permdev\\): mounted filesystem ([0-9a-f-]+) .*/\\1/p" | head -1; }
# (One key type, one connection: when ssh-keyscan opens one per type at
# once, serve sometimes drops one of them; a few tries.)
hostkeys() {
	local k
	for _ in 1 2 3; do
		k=$(ssh-keyscan -T 10 -t ed25519 -p "$sshport" 127.0.0.1 2>/dev/null | awk '{print $2, $3}' || true)
		[ -z "$k" ] || break
		sleep 1
	done
	echo "$k"
}
# update_rebooted: the new kernel started; fails the test if gok ended
# with an error first.
update_rebooted() {
	if [ -s "$scratch/update.rc" ] && [ "$(cat "$scratch/update.rc")" != 0 ]; then
		fail "update: gok update failed (exit $(cat "$scratch/update.rc")); its log: $(goklog | tail -20)"
	fi
	[ -n "$(kexec_line)" ]
}
# kexec_line: the line of the serial log where the new kernel starts.
kexec_line() { awk -v f="$from_update" 'NR >= f && /kexec_core: Starting new kernel/ { print NR; exit }' "$serial"; }

start=$(date +%s)
boot 1
wait_for "arkbox adopting $ndisks blank disks" serial_has 'msg="disk adopted"' $ndisks
wait_for "arkbox creating its pool" serial_has 'msg="pool created"'
perm_fs=$(perm_uuid)
[ -n "$perm_fs" ] || fail "boot 1: no UUID of /perm's file system in the kernel's mount message"
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
verify_data "the power cut"
if [ "$board" = pi ]; then
	clean_poweroff
	echo "vmtest: PASS in $(($(date +%s) - start))s (Raspberry Pi image on qemu's raspi3b: 2 boots, a hard power-off between them)"
	exit 0
fi

# The update: image/update.sh runs gok update with the instance folder
# build.sh used, sent to the forwarded port of the web interface; the new
# build is the product image (no overlay: serve no longer adopts disks,
# which is how a box set up by the test's image becomes a product) with a
# build id of its own. What the box is now, to compare after the update:
before_ts=$(status_json | jfield BuildTimestamp) || fail "boot 2: no build timestamp in gokrazy's status"
before_root=$(log_now | sed -nE 's/.*Kernel command line:.* (root=[^ ]+).*/\1/p' | head -1)
before_build=$(log_now | sed -nE 's/.*msg=starting .*build=([^ ]+).*/\1/p' | head -1)
before_disks=$(disk_uuids)
hostkey=$(hostkeys)
[ -n "$hostkey" ] || fail "boot 2: ssh-keyscan got no SSH host key from serve"
build_id=vmtest-update-$(date -u +%Y%m%dT%H%M%SZ)
from_update=$(($(wc -l <"$serial") + 1))
n=3
t0=$(date +%s.%N)
setsid bash -c 'ARKBOX_IMAGE_OVERLAY= ARKBOX_IMAGE_WORK="$1" ARKBOX_BUILD_ID="$2" ARKBOX_UPDATE_URL="$3" \
	image/update.sh amd64 >"$4" 2>&1; echo $? >"$5"' _ \
	"$work" "$build_id" "http://127.0.0.1:$httpport/" "$scratch/update.log" "$scratch/update.rc" &
gokpid=$!
echo "vmtest: update: gok update of the product image, build $build_id, through port $httpport (was build $before_build, gokrazy build $before_ts)"
wait_for "gok update pushing the new build and gokrazy restarting into it (kexec)" update_rebooted
from=$(kexec_line)
sed -n "${from_update},${from}p" "$serial" >"$scratch/update-stop.log"
[ "$(grep -c 'msg="pool disk unmounted"' "$scratch/update-stop.log")" = $ndisks ] ||
	fail "update: serve did not unmount the $ndisks pool disks when gokrazy stopped it for the reboot"
grep -q 'unmounting /perm failed' "$scratch/update-stop.log" && fail "update: gokrazy could not unmount /perm: $(grep -m1 'unmounting /perm failed' "$scratch/update-stop.log")"
grep -qE 'EXT4-fs \(vda4\): unmounting filesystem' "$scratch/update-stop.log" || fail "update: /perm was not unmounted before the reboot"
echo "vmtest: update: gok sent the $(goklog | tr '\r' '\n' | sed -nE 's/.*Transferred ([a-z ]*system \([^)]*\)).*/\1/p' | paste -sd, | sed 's/,/, the /g'); serve unmounted the pool disks, gokrazy unmounted /perm"
boot_checks
log_now | grep -q 'EXT4-fs (vda4): recovery complete' && fail "boot 3: /perm's journal was replayed: it was not unmounted cleanly before the update's reboot"
# (1) The new build runs: from the other root partition, with gok's build
# timestamp (serial console and web interface) and arkbox's build id.
after_root=$(log_now | sed -nE 's/.*Kernel command line:.* (root=[^ ]+).*/\1/p' | head -1)
[ -n "$after_root" ] && [ "$after_root" != "$before_root" ] || fail "boot 3: booted from $after_root, not from the other root partition (before the update: $before_root)"
gok_ts=$(goklog | sed -nE 's/.*Build timestamp: ([^ ]+).*/\1/p' | head -1)
[ -n "$gok_ts" ] || fail "update: gok printed no build timestamp; its log: $(goklog | tail -20)"
[ "$gok_ts" != "$before_ts" ] || fail "update: gok's build has the timestamp of the running one ($gok_ts)"
serial_ts=$(log_now | sed -nE 's/^gokrazy build timestamp ([^ ]+).*/\1/p' | head -1)
[ "$serial_ts" = "$gok_ts" ] || fail "boot 3: gokrazy started build '$serial_ts', want the update's $gok_ts"
web_ts=$(status_json | jfield BuildTimestamp) || fail "boot 3: no build timestamp in gokrazy's status"
[ "$web_ts" = "$gok_ts" ] || fail "boot 3: gokrazy's web interface reports build $web_ts, want the update's $gok_ts"
wait_for "arkbox mounting its $ndisks pool disks" serial_has 'msg="pool disk mounted"' $ndisks
wait_for "arkbox serving" serial_has 'msg=serving'
after_build=$(log_now | sed -nE 's/.*msg=starting .*build=([^ ]+).*/\1/p' | head -1)
[ "$after_build" = "$build_id" ] || fail "boot 3: arkbox started as build '$after_build', want the update's $build_id"
args=$(status_json /user/arkbox | jfield Args) || fail "boot 3: no command line of arkbox in gokrazy's status"
case " $args " in
*" serve "*--adopt-blank-disks*) fail "boot 3: serve still runs with the test image's flags: $args" ;;
*" serve "*) ;;
*) fail "boot 3: arkbox does not run serve: $args" ;;
esac
echo "vmtest: boot 3: the update runs: $after_root, gokrazy build $gok_ts, arkbox build $after_build, the product's command line (no adoption)"
# (2) The pool: the same disks, by UUID; nothing adopted.
[ "$(count 'msg="disk adopted"')" = 0 ] || fail "boot 3: arkbox adopted a disk after the update"
[ "$(disk_uuids)" = "$before_disks" ] || fail "boot 3: serve mounted the disks $(disk_uuids | paste -sd' '), before the update $(echo "$before_disks" | paste -sd' ')"
# (3) /perm: the same file system, with serve's configuration, users and
# secrets (SSH host key) as they were.
[ "$(perm_uuid)" = "$perm_fs" ] || fail "boot 3: /perm is file system '$(perm_uuid)', before the update $perm_fs"
[ "$(hostkeys)" = "$hostkey" ] || fail "boot 3: serve's SSH host key changed with the update (the secrets on /perm were lost)"
[ -z "$(printed_password)" ] || fail "boot 3: the admin password was printed again (a new configuration on /perm)"
echo "vmtest: boot 3: the same $ndisks pool disks mounted by UUID, nothing adopted; /perm is the same file system ($perm_fs), serve's SSH host key and admin password unchanged"
wait_for "gok update seeing the new build and ending" test -s "$scratch/update.rc"
gokpid=""
[ "$(cat "$scratch/update.rc")" = 0 ] || fail "update: gok update failed (exit $(cat "$scratch/update.rc")); its log: $(goklog | tail -20)"
verify_data "the update"
clean_poweroff
echo "vmtest: PASS in $(($(date +%s) - start))s (3 boots: a hard power-off after the first, an update over the network after the second)"
