#!/usr/bin/env bash
# make run: a repository under ./var on a three-folder pool (2 data + 1
# parity), a backup of real files into it, and the commands to explore it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/arkbox
repo=./var/repo
pwfile=./var/passphrase
mkdir -p var
if [ ! -f "$pwfile" ]; then
	umask 077
	head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pwfile"
fi
if [ ! -f "$repo/home.json" ]; then
	$bin init --repo "$repo" --password-file "$pwfile" \
		--disk ./var/disks/disk1 --disk ./var/disks/disk2 --disk ./var/disks/disk3
fi
sample=$(go env GOROOT)/src
echo "backing up a sample of real files: $sample"
$bin backup --repo "$repo" --password-file "$pwfile" --source-name go-src "$sample"
$bin snapshots --repo "$repo" --password-file "$pwfile"
cat <<EOT

The repository is in $repo; its passphrase is in $pwfile:
  export ARKBOX_REPO=$repo ARKBOX_PASSWORD=\$(cat $pwfile)
Then try:
  $bin snapshots                       # list snapshots
  $bin ls latest:src/net/http | head   # browse one
  $bin restore latest --target ./var/restore
  $bin backup --source-name go-src $sample    # again: only changes are read
  $bin check --read-data               # verify every byte
  $bin scrub                           # verify and repair shards on the disks
  $bin stats                           # dedup, compression, redundancy
  $bin forget --keep-last 3 --prune    # retention
EOT
