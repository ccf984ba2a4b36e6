#!/usr/bin/env bash
# Boots the amd64 image under qemu (software emulation, UEFI through OVMF)
# with three blank disks attached as USB mass storage, and checks from the
# host that gokrazy came up: its web interface answers through a forwarded
# port, and the serial console shows the kernel booting, the USB disks being
# detected, and arkbox-hwlog listing them. Then it pulls the plug (qemu quits
# without a shutdown), boots the same disk again and checks the same.
#
#   image/vmtest.sh [IMAGE]    (default: bin/arkbox-amd64.img; build it with image/build.sh amd64)
#
# Environment: ARKBOX_IMAGE_WORK (where build.sh kept the web interface
# password), ARKBOX_VMTEST_TIMEOUT (seconds per boot, default 300),
# ARKBOX_VMTEST_KEEP=1 keeps the scratch folder with the serial logs.
# Needs: qemu-system-x86_64, OVMF (Debian: qemu-system-x86 ovmf), curl.
set -euo pipefail

cd "$(dirname "$0")/.."
img=${1:-bin/arkbox-amd64.img}
work=${ARKBOX_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/arkbox-image}
timeout=${ARKBOX_VMTEST_TIMEOUT:-300}
pw=$(cat "$work/http-password.txt")
ovmf=""
for f in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd /usr/share/qemu/OVMF.fd; do
	if [ -f "$f" ]; then
		ovmf=$f
		break
	fi
done
[ -n "$ovmf" ] || { echo "vmtest: OVMF not found (apt-get install ovmf)" >&2; exit 1; }
vars=${ovmf/CODE/VARS}

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
for i in 1 2 3; do truncate -s 1G "$scratch/usb$i.raw"; done

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

count() { local c; c=$(grep -cE "$1" "$serial" 2>/dev/null || true); echo "${c:-0}"; }

fail() {
	echo "vmtest: FAIL: $*" >&2
	echo "--- last lines of the serial console:" >&2
	tail -40 "$serial" >&2 || true
	exit 1
}

boot() {
	local n=$1
	serial=$scratch/serial$n.log
	httpport=$(freeport)
	monport=$(freeport)
	local fw=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf")
	[ -f "$scratch/vars.fd" ] && fw+=(-drive "if=pflash,format=raw,file=$scratch/vars.fd")
	local usb=(-device qemu-xhci,id=xhci)
	for i in 1 2 3; do
		usb+=(-drive "if=none,id=usb$i,format=raw,file=$scratch/usb$i.raw"
			-device "usb-storage,bus=xhci.0,drive=usb$i,serial=ARKBOXTEST000$i")
	done
	t0=$(date +%s.%N)
	qemu-system-x86_64 -m 1024 -smp 2 -accel tcg -display none -no-reboot \
		"${fw[@]}" \
		-drive "if=none,id=sys,file=$scratch/disk.img,format=raw" -device virtio-blk-pci,drive=sys,bootindex=0 \
		"${usb[@]}" \
		-netdev "user,id=n,hostfwd=tcp:127.0.0.1:$httpport-:8080" -device e1000,netdev=n \
		-serial "file:$serial" -monitor "tcp:127.0.0.1:$monport,server,nowait" &
	qpid=$!
	local kernel="" http="" disks="" hwlog=""
	while :; do
		now=$(date +%s.%N)
		el=$(awk -v a="$t0" -v b="$now" 'BEGIN{printf "%.0f", b-a}')
		[ "$el" -le "$timeout" ] || fail "boot $n: not up after ${timeout}s (kernel=${kernel:-no} disks=${disks:-no} hwlog=${hwlog:-no} http=${http:-no})"
		kill -0 "$qpid" 2>/dev/null || fail "boot $n: qemu exited"
		if [ -z "$kernel" ] && grep -q "Linux version" "$serial" 2>/dev/null; then
			kernel=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
			echo "vmtest: boot $n: kernel booting after ${kernel}s"
		fi
		if [ -z "$disks" ] && [ "$(count 'sd [0-9:]+: \[sd[a-z]\] Attached SCSI (removable )?disk')" -ge 3 ]; then
			disks=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
			echo "vmtest: boot $n: kernel attached 3 USB disks after ${disks}s"
		fi
		if [ -z "$hwlog" ] && [ "$(count 'arkbox-hwlog: disk.*transport=usb.*serial=ARKBOXTEST000')" -ge 3 ]; then
			hwlog=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
			echo "vmtest: boot $n: arkbox-hwlog listed 3 USB disks after ${hwlog}s"
		fi
		if [ -z "$http" ]; then
			code=$(curl -s -o "$scratch/status$n.html" -w '%{http_code}' -m 5 -u "gokrazy:$pw" "http://127.0.0.1:$httpport/" || true)
			if [ "$code" = 200 ] && grep -q arkbox "$scratch/status$n.html"; then
				http=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
				echo "vmtest: boot $n: gokrazy web interface answered (200, hostname arkbox) after ${http}s"
			fi
		fi
		[ -n "$kernel" ] && [ -n "$http" ] && [ -n "$disks" ] && [ -n "$hwlog" ] && break
		sleep 2
	done
	grep -qE 'EXT4-fs \(vda4\): mounted filesystem .* r/w' "$serial" || fail "boot $n: /perm (vda4) was not mounted read-write"
	if grep -q 'EXT4-fs (vda4): recovery complete' "$serial"; then
		echo "vmtest: boot $n: /perm journal replayed after the power cut, mounted read-write"
	else
		echo "vmtest: boot $n: /perm mounted read-write"
	fi
	code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$httpport/" || true)
	[ "$code" = 401 ] || fail "boot $n: web interface answered $code without a password, want 401"
	grep 'arkbox-hwlog: disk' "$serial" | sed 's/^/    /' | head -5
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

start=$(date +%s)
boot 1
poweroff
echo "vmtest: power cut after boot 1"
boot 2
poweroff
echo "vmtest: PASS in $(($(date +%s) - start))s (2 boots, hard power-off between them)"
