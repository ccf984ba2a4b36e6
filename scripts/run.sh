#!/usr/bin/env bash
# make run: the appliance on this machine. Data folder ./var/box in the
# working tree (a three-folder 2+1 pool under ./var/box/disks), one share
# "backups", SFTP on 127.0.0.1:2222; the first start prints the admin
# password once.
set -euo pipefail
cd "$(dirname "$0")/.."
data=./var/box
cat <<EOT
arkbox: data folder $data
  upload:    sftp -P 2222 admin@127.0.0.1        (then: cd backups; put FILE)
  snapshots: over SFTP in /backups/.snapshots/<time>/ (read-only); while serving, in another terminal:
             ./bin/arkbox snapshot backups --repo $data
             ./bin/arkbox snapshots --repo $data
             ./bin/arkbox jobs --repo $data
             (ls, diff, restore: stop the server first, Ctrl-C)
  settings:  $data/arkbox.json; applied at once when changed with
             ./bin/arkbox user add NAME --repo $data, user grant NAME backups --rw, share add NAME
EOT
exec ./bin/arkbox serve --repo "$data"
