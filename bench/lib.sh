# bench/lib.sh — what the benchmark scripts share; sourced, not run.
# The sourcing script defines CACHE, say and die.

# The peers' versions (PEERS.md), built from their modules once.
RESTIC_MODULE=github.com/restic/restic
RESTIC_VERSION=${RESTIC_VERSION:-v0.19.1}

# build_peer NAME MODULE VERSION PACKAGE: builds a peer's command from its
# module (the module proxy is all a build machine reaches) into
# $CACHE/bin/NAME-VERSION once, and prints that path.
build_peer() {
	local name=$1 mod=$2 ver=$3 pkg=$4
	local out=$CACHE/bin/$name-$ver
	if [ -x "$out" ]; then echo "$out"; return; fi
	say "building $name $ver (once; cached in $out)" >&2
	mkdir -p "$CACHE/bin"
	local dir
	dir=$(cd "$CACHE" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$mod@$ver" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $mod@$ver gave no Dir"
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod nice go build -trimpath -o "$out.tmp" "$pkg") ||
		die "building $name failed"
	mv "$out.tmp" "$out"
	echo "$out"
}
