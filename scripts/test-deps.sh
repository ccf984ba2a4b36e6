#!/usr/bin/env bash
# Installs the Debian packages the tests use, only when one is missing.
set -euo pipefail
pkgs=(fuse3 attr e2fsprogs openssh-client openssh-server sshpass sshfs argon2 rclone qemu-system-x86 qemu-system-arm)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# versitygw, the S3 server the replication tests run against (a pinned Go
# tool; the first build takes a few minutes, then it is cached).
VERSITYGW_VERSION=v1.8.0
bin="${XDG_CACHE_HOME:-$HOME/.cache}/arkbox/bin"
stamp="$bin/versitygw.version"
if [ ! -x "$bin/versitygw" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$VERSITYGW_VERSION" ]; then
	echo "building versitygw $VERSITYGW_VERSION (once)…" >&2
	mkdir -p "$bin"
	(cd / && GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION")
	echo "$VERSITYGW_VERSION" >"$stamp"
fi

# The kernels of the PC and Raspberry Pi images (the versions
# image/versions.txt pins): hw's virtual machine tests boot them under qemu
# with emulated SATA, NVMe, USB and SD card disks. A no-op when the module
# cache holds them.
for k in $(awk '$1 ~ /^github.com\/gokrazy\/kernel\./ { print $1 "@" $2 }' "$(dirname "$0")/../image/versions.txt"); do
	go mod download "$k"
done
