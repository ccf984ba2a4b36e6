//go:build linux

package hw

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file talks to real disks. The build machines have none with SMART
// (a virtio disk only); TestVirtualMachineDisks runs it inside a virtual
// machine against the kernel's own drivers — libata's SAT translation for
// an emulated SATA disk, the NVMe driver for an emulated NVMe disk, and
// usb-storage for a USB disk without ATA pass-through — and the parsers it
// feeds are tested on the pages recorded there and on synthetic ones.

const (
	sgIO                  = 0x2285 // SG_IO
	sgDxferNone           = -1     // SG_DXFER_NONE
	sgDxferFromDev        = -3     // SG_DXFER_FROM_DEV
	ataPassThrough16      = 0x85
	ataSmartCmd           = 0xB0
	ataSmartReadData      = 0xD0
	ataSmartReadThr       = 0xD1
	ataSmartStatusFeature = 0xDA       // SMART RETURN STATUS
	nvmeAdminIoctl        = 0xC0484E41 // NVME_IOCTL_ADMIN_CMD
	nvmeGetLogPage        = 0x02
	nvmeLogSmart          = 0x02
)

// sgIOHdr is struct sg_io_hdr of <scsi/sg.h> for 64-bit Linux.
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         uintptr
	cmdp           uintptr
	sbp            uintptr
	timeout        uint32
	flags          uint32
	packID         int32
	usrPtr         uintptr
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

// nvmeAdminCmd is struct nvme_admin_cmd of <linux/nvme_ioctl.h>.
type nvmeAdminCmd struct {
	opcode      uint8
	flags       uint8
	rsvd1       uint16
	nsid        uint32
	cdw2, cdw3  uint32
	metadata    uint64
	addr        uint64
	metadataLen uint32
	dataLen     uint32
	cdw10       uint32
	cdw11       uint32
	cdw12       uint32
	cdw13       uint32
	cdw14       uint32
	cdw15       uint32
	timeoutMs   uint32
	result      uint32
}

// ReadSMART reads a disk's SMART health: the NVMe health log for NVMe
// disks, otherwise ATA SMART through SCSI ATA PASS-THROUGH(16) (SATA disks,
// and USB disks behind bridges that implement SAT). Needs root. Evaluate is
// applied with default limits.
func ReadSMART(ctx context.Context, d Disk) (*Health, error) {
	pages, err := ReadSMARTPages(ctx, d)
	if err != nil {
		return nil, err
	}
	h, err := pages.Parse()
	if err != nil {
		return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, err)
	}
	return h, nil
}

// ReadSMARTPages reads a disk's raw SMART pages (see ReadSMART).
func ReadSMARTPages(ctx context.Context, d Disk) (*SMARTPages, error) {
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, err)
	}
	defer f.Close()
	if d.Transport == TransportNVMe || strings.HasPrefix(d.Name, "nvme") {
		page, err := nvmeSmartLog(f)
		if err != nil {
			return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, err)
		}
		return &SMARTPages{NVMeLog: page}, nil
	}
	data, err := ataSmartPage(f, ataSmartReadData)
	if err != nil {
		return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, err)
	}
	thr, _ := ataSmartPage(f, ataSmartReadThr) // optional: some bridges refuse it
	status, _ := ataSmartStatus(f)             // optional: some bridges return no registers
	return &SMARTPages{ATAData: data, ATAThresholds: thr, ATAStatus: status}, nil
}

// ataSmartPage issues SMART READ DATA or READ THRESHOLDS (feature) as
// ATA PASS-THROUGH(16), PIO data-in, one 512-byte sector.
func ataSmartPage(f *os.File, feature byte) ([]byte, error) {
	buf := make([]byte, smartPageSize)
	if _, err := ataSmartCommand(f, feature, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ataSmartStatus issues SMART RETURN STATUS as ATA PASS-THROUGH(16),
// non-data, asking for the ATA registers back (CK_COND): it returns the
// sense data that carries them, for ParseATAStatus.
func ataSmartStatus(f *os.File) ([]byte, error) {
	return ataSmartCommand(f, ataSmartStatusFeature, nil)
}

// ataSmartCommand sends the ATA SMART command with the feature through
// SG_IO: PIO data-in into buf, or non-data with CK_COND when buf is nil.
// It returns the sense data the SCSI layer wrote.
func ataSmartCommand(f *os.File, feature byte, buf []byte) ([]byte, error) {
	sense := make([]byte, 32)
	cdb := []byte{
		ataPassThrough16,
		4 << 1,     // protocol 4: PIO data-in
		0x0e,       // t_dir=from device, byt_blok=1, t_length=sector count
		0, feature, // features
		0, 1, // sector count 1
		0, 0, // lba low
		0, 0x4f, // lba mid
		0, 0xc2, // lba high
		0,           // device
		ataSmartCmd, // command
		0,           // control
	}
	dir := int32(sgDxferFromDev)
	var dxferp uintptr
	if buf == nil {
		cdb[1] = 3 << 1 // protocol 3: non-data
		cdb[2] = 0x20   // ck_cond: return the registers in the sense data
		cdb[6] = 0
		dir = sgDxferNone
	} else {
		dxferp = uintptr(unsafe.Pointer(&buf[0]))
	}
	hdr := sgIOHdr{
		interfaceID:    'S',
		dxferDirection: dir,
		cmdLen:         uint8(len(cdb)),
		mxSbLen:        uint8(len(sense)),
		dxferLen:       uint32(len(buf)),
		dxferp:         dxferp,
		cmdp:           uintptr(unsafe.Pointer(&cdb[0])),
		sbp:            uintptr(unsafe.Pointer(&sense[0])),
		timeout:        10000,
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), sgIO, uintptr(unsafe.Pointer(&hdr)))
	runtime.KeepAlive(buf)
	runtime.KeepAlive(cdb)
	runtime.KeepAlive(sense)
	if errno != 0 {
		return nil, fmt.Errorf("SG_IO ATA PASS-THROUGH: %w", errno)
	}
	sense = sense[:hdr.sbLenWr]
	if hdr.hostStatus != 0 || hdr.driverStatus&^0x08 != 0 {
		return nil, fmt.Errorf("SG_IO ATA PASS-THROUGH: host status %#x, driver status %#x", hdr.hostStatus, hdr.driverStatus)
	}
	if hdr.status != 0 {
		if err := senseError(sense); err != nil {
			return nil, fmt.Errorf("SG_IO ATA PASS-THROUGH: %w", err)
		}
		if len(sense) == 0 {
			return nil, fmt.Errorf("SG_IO ATA PASS-THROUGH: scsi status %#x without sense data", hdr.status)
		}
		// CHECK CONDITION with "ATA pass-through information available"
		// (or recovered error) carries the ATA registers: success.
	}
	return sense, nil
}

// nvmeSmartLog reads the SMART / Health Information log page of all
// namespaces through the NVMe admin ioctl.
func nvmeSmartLog(f *os.File) ([]byte, error) {
	buf := make([]byte, smartPageSize)
	numd := uint32(len(buf)/4 - 1)
	cmd := nvmeAdminCmd{
		opcode:    nvmeGetLogPage,
		nsid:      0xffffffff,
		addr:      uint64(uintptr(unsafe.Pointer(&buf[0]))),
		dataLen:   uint32(len(buf)),
		cdw10:     numd<<16 | nvmeLogSmart,
		timeoutMs: 10000,
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), nvmeAdminIoctl, uintptr(unsafe.Pointer(&cmd)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return nil, fmt.Errorf("NVMe get log page 02h: %w", errno)
	}
	return buf, nil
}
