#!/usr/bin/env bash
# Installs the Debian packages the image build and the boot test use
# (make image, make vm-test), only when one is missing.
set -euo pipefail
pkgs=(qemu-system-x86 qemu-system-arm mtools ovmf e2fsprogs curl openssh-client sshpass python3)
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
