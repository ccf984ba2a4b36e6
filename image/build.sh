#!/usr/bin/env bash
# Builds the gokrazy images of the appliance from config.json with gok (a Go
# tool of this module): arkbox-rpi.img (Raspberry Pi 4/5) and
# arkbox-amd64.img (x86-64 PCs, UEFI or BIOS), each with its /perm
# partition already formatted.
#
#   image/build.sh [rpi] [amd64]          (default: both)
#
# Environment:
#   ARKBOX_IMAGE_OUT    where the images go (default: bin/ of the work tree)
#   ARKBOX_IMAGE_WORK   gok's instance folders and the instance's secrets
#                       (web interface password, machine id); keep it for
#                       `gok update` (default: ~/.cache/arkbox-image)
#   ARKBOX_IMAGE_BYTES  image size in bytes (default 2 GiB; /perm gets what
#                       the boot and two root partitions, 1.1 GB, leave)
#   ARKBOX_IMAGE_OVERLAY a JSON merge patch applied to config.json (the boot
#                       test's image: image/vmtest/overlay.json)
#   ARKBOX_BUILD_ID     the build id arkbox is linked with and logs when serve
#                       starts (default: UTC time and commit, e.g.
#                       20260101T120000Z-0123abc)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
out=${ARKBOX_IMAGE_OUT:-$repo/bin}
work=${ARKBOX_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/arkbox-image}
bytes=${ARKBOX_IMAGE_BYTES:-$((2 * 1024 * 1024 * 1024))}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rpi amd64)

mkfs=$(command -v mkfs.ext4 || echo /sbin/mkfs.ext4)
if [ ! -x "$mkfs" ]; then
	echo "build.sh: mkfs.ext4 is missing (Debian: apt-get install e2fsprogs)" >&2
	exit 1
fi
mkdir -p "$out" "$work"

for arch in "${targets[@]}"; do
	case $arch in rpi | amd64) ;; *)
		echo "build.sh: unknown target $arch (rpi or amd64)" >&2
		exit 2
		;;
	esac
	start=$(date +%s)
	inst=$work/$arch/arkbox
	img=$out/arkbox-$arch.img
	go run ./image/mkinstance -arch "$arch" -config config.json -overlay "${ARKBOX_IMAGE_OVERLAY:-}" \
		-build "${ARKBOX_BUILD_ID:-}" -versions image/versions.txt -repo "$repo" -state "$work" -out "$inst"
	rm -f "$img"
	go tool gok --parent_dir "$work/$arch" -i arkbox overwrite \
		--full "$img" --target_storage_bytes "$bytes" 2>&1 | tee "$work/$arch/overwrite.log"
	# gok prints how to format /perm: "mkfs.ext4 -F -E offset=N FILE SIZE_KB".
	line=$(grep -o 'mkfs.ext4 -F -E offset=[0-9]* .*' "$work/$arch/overwrite.log" | tail -1)
	offset=$(sed -E 's/.*offset=([0-9]+) .*/\1/' <<<"$line")
	kb=$(awk '{print $NF}' <<<"$line")
	if [ -z "$offset" ] || [ -z "$kb" ]; then
		echo "build.sh: gok did not print the /perm offset" >&2
		exit 1
	fi
	"$mkfs" -q -F -L perm -E offset="$offset" "$img" "$kb"
	echo "build.sh: $img ($arch, /perm at byte $offset, ${kb} KiB) in $(($(date +%s) - start)) s"
done
