# arkbox — make run · make test · make bench · make image · make vm-test
GO      ?= go
BIN     := bin/arkbox
GOFLAGS ?=

.PHONY: all build run test test-deps vet fmt-check unit bench fuzz image vm-deps vm-image vm-test test-vm clean

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
image: vm-deps
	./image/build.sh

vm-deps:
	./scripts/vm-deps.sh

# The boot test's images: config.json with image/vmtest/overlay.json
# (serve adopts three blank disks, snapshots every minute) for the PC, and
# image/vmtest/overlay-pi.json (the same, with DHCP on the USB network
# adapter the emulated Pi has) for the Raspberry Pi.
vm-image: vm-deps
	ARKBOX_IMAGE_OVERLAY=image/vmtest/overlay.json ARKBOX_IMAGE_OUT=bin/vmtest ./image/build.sh amd64
	ARKBOX_IMAGE_OVERLAY=image/vmtest/overlay-pi.json ARKBOX_IMAGE_OUT=bin/vmtest ./image/build.sh rpi

# Boots the boot test's PC image under qemu (software emulation) with three
# USB disks: adoption, pool, SFTP upload, snapshot, hard power-off, second
# boot, update to the product image with gok update, third boot, everything
# verified (about 5 minutes on 2 cores); then the Raspberry Pi image on an
# emulated Pi with three USB disks: the same up to the second boot (about
# 8 minutes). CI runs it (test-vm).
vm-test: vm-image
	./image/vmtest.sh bin/vmtest/arkbox-amd64.img
	ARKBOX_VMTEST_BOARD=pi ./image/vmtest.sh bin/vmtest/arkbox-rpi.img

test-vm: vm-test

clean:
	rm -rf bin
