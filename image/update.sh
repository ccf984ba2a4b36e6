#!/usr/bin/env bash
# Updates a running box over the network, the gokrazy way: builds the
# instance again as build.sh does (same work folder, so the same web
# interface password; same overlay if the box was built with one), then
# `gok update` uploads the new root file system to the box's inactive root
# partition and the boot files, switches over, reboots the box and waits
# until it answers with the new build. /perm and the pool's disks are not
# touched.
#
#   image/update.sh rpi|amd64 [gok update flags, e.g. --testboot]
#
# Environment:
#   ARKBOX_UPDATE_URL   the box's web interface, e.g. http://192.168.1.20:8080/
#                       (default: http://arkbox:8080/, the hostname and port
#                       of config.json; the name must resolve)
#   ARKBOX_IMAGE_WORK, ARKBOX_IMAGE_OVERLAY, ARKBOX_BUILD_ID: as for build.sh
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
work=${ARKBOX_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/arkbox-image}
[ $# -ge 1 ] || { echo "usage: image/update.sh rpi|amd64 [gok update flags]" >&2; exit 2; }
arch=$1
shift
case $arch in rpi | amd64) ;; *)
	echo "update.sh: unknown target $arch (rpi or amd64)" >&2
	exit 2
	;;
esac
if [ ! -f "$work/http-password.txt" ]; then
	echo "update.sh: no password in $work (ARKBOX_IMAGE_WORK): the box's image was built with another work folder" >&2
	exit 1
fi
inst=$work/$arch/arkbox
go run ./image/mkinstance -arch "$arch" -config config.json -overlay "${ARKBOX_IMAGE_OVERLAY:-}" \
	-build "${ARKBOX_BUILD_ID:-}" -update-url "${ARKBOX_UPDATE_URL:-}" \
	-versions image/versions.txt -repo "$repo" -state "$work" -out "$inst"
go tool gok --parent_dir "$work/$arch" -i arkbox update "$@"
