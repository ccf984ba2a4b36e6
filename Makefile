# arkbox — make run · make test · make bench
GO      ?= go
BIN     := bin/arkbox
GOFLAGS ?=

.PHONY: all build run test test-deps vet fmt-check unit bench fuzz image vm-test clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./appliance/cmd/arkbox

# Starts arkbox on this machine with a repository under ./var.
run: build
	./scripts/run.sh

# Installs what the tests need (idempotent), then vets and runs every test
# with the race detector.
test: test-deps fmt-check vet unit

test-deps:
	./scripts/test-deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	ARKBOX_REQUIRE_PEERS=1 $(GO) test -race -timeout 30m ./...

# Short fuzzing of every decoder of an on-disk format (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Side-by-side benchmarks: backups against restic and kopia, offsite sync
# against rclone, SFTP ingest against OpenSSH's sftp-server (bench/README.md).
bench: build
	./bench/run.sh $(BENCHFLAGS)
	./bench/replicate.sh
	./bench/sftp.sh

# The gokrazy images (bin/arkbox-rpi.img, bin/arkbox-amd64.img), see doc/image.md.
image:
	./image/build.sh

# Boots the amd64 image under qemu (software emulation) with three USB disks,
# powers it off hard and boots it again.
vm-test:
	test -f bin/arkbox-amd64.img || ./image/build.sh amd64
	./image/vmtest.sh bin/arkbox-amd64.img

clean:
	rm -rf bin
