package hw

import (
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateSmart = flag.Bool("update-smart", false, "rewrite the synthetic SMART pages in testdata/smart")

type ataAttr struct {
	id           uint8
	flags        uint16
	cur, worst   uint8
	raw          uint64
	threshold    uint8
	hasThreshold bool
}

// ataPages builds an ATA SMART READ DATA page and its READ THRESHOLDS page
// the way a drive lays them out, checksums included.
func ataPages(attrs []ataAttr) (data, thr []byte) {
	data = make([]byte, 512)
	thr = make([]byte, 512)
	binary.LittleEndian.PutUint16(data, 0x10)
	binary.LittleEndian.PutUint16(thr, 0x10)
	for i, a := range attrs {
		e := data[2+12*i:]
		e[0] = a.id
		binary.LittleEndian.PutUint16(e[1:], a.flags)
		e[3], e[4] = a.cur, a.worst
		for b := 0; b < 6; b++ {
			e[5+b] = byte(a.raw >> (8 * b))
		}
		t := thr[2+12*i:]
		t[0], t[1] = a.id, a.threshold
	}
	data[362] = 0x82 // offline data collection completed
	data[367] = 0x7b // capabilities
	for _, p := range [][]byte{data, thr} {
		var s byte
		for _, b := range p[:511] {
			s += b
		}
		p[511] = -s
	}
	return data, thr
}

type nvmeLog struct {
	cw                        uint8
	kelvin                    uint16
	spare, spareThr, used     uint8
	cycles, hours, unsafe, me uint64
}

func nvmePage(l nvmeLog) []byte {
	p := make([]byte, 512)
	p[0] = l.cw
	binary.LittleEndian.PutUint16(p[1:], l.kelvin)
	p[3], p[4], p[5] = l.spare, l.spareThr, l.used
	binary.LittleEndian.PutUint64(p[32:], 41234567) // data units read
	binary.LittleEndian.PutUint64(p[48:], 38765432) // data units written
	binary.LittleEndian.PutUint64(p[112:], l.cycles)
	binary.LittleEndian.PutUint64(p[128:], l.hours)
	binary.LittleEndian.PutUint64(p[144:], l.unsafe)
	binary.LittleEndian.PutUint64(p[160:], l.me)
	binary.LittleEndian.PutUint16(p[200:], l.kelvin) // temperature sensor 1
	return p
}

// syntheticSmart are the pages in testdata/smart: made up, modelled on what
// smartctl -x shows for such drives (the build machines have no SMART
// device to record from).
func syntheticSmart() map[string][]byte {
	healthy, healthyThr := ataPages([]ataAttr{
		{id: 5, flags: 0x33, cur: 100, worst: 100, raw: 0, threshold: 10},
		{id: 9, flags: 0x32, cur: 97, worst: 97, raw: 12034},
		{id: 12, flags: 0x32, cur: 99, worst: 99, raw: 87},
		{id: 177, flags: 0x13, cur: 99, worst: 99, raw: 6, threshold: 0},
		{id: 190, flags: 0x32, cur: 66, worst: 55, raw: 34},
		{id: 194, flags: 0x22, cur: 66, worst: 55, raw: 0x002D_0012_0022}, // 34 °C, min 18, max 45
		{id: 197, flags: 0x32, cur: 100, worst: 100, raw: 0},
		{id: 198, flags: 0x30, cur: 100, worst: 100, raw: 0},
		{id: 199, flags: 0x3e, cur: 100, worst: 100, raw: 0},
	})
	failing, failingThr := ataPages([]ataAttr{
		{id: 1, flags: 0x2f, cur: 200, worst: 200, raw: 17, threshold: 51},
		{id: 5, flags: 0x33, cur: 130, worst: 130, raw: 1832, threshold: 140},
		{id: 9, flags: 0x32, cur: 21, worst: 21, raw: 58012},
		{id: 12, flags: 0x32, cur: 100, worst: 100, raw: 211},
		{id: 194, flags: 0x22, cur: 112, worst: 95, raw: 58},
		{id: 197, flags: 0x32, cur: 200, worst: 200, raw: 8},
		{id: 198, flags: 0x30, cur: 200, worst: 200, raw: 2},
		{id: 199, flags: 0x32, cur: 200, worst: 200, raw: 41},
	})
	return map[string][]byte{
		"ata-ssd-healthy.data":       healthy,
		"ata-ssd-healthy.thresholds": healthyThr,
		"ata-hdd-failing.data":       failing,
		"ata-hdd-failing.thresholds": failingThr,
		"nvme-healthy.log":           nvmePage(nvmeLog{kelvin: 308, spare: 100, spareThr: 10, used: 3, cycles: 410, hours: 5123, unsafe: 12}),
		"nvme-worn.log":              nvmePage(nvmeLog{cw: NVMeWarnSpare | NVMeWarnReliability, kelvin: 349, spare: 4, spareThr: 10, used: 97, cycles: 1999, hours: 40211, unsafe: 77, me: 3}),
	}
}

func TestSyntheticSmartFiles(t *testing.T) {
	for name, page := range syntheticSmart() {
		p := filepath.Join("testdata", "smart", name)
		if *updateSmart {
			if err := os.WriteFile(p, page, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(b, page) {
			t.Errorf("%s differs from its generator (run with -update-smart)", p)
		}
	}
}

func readSmartFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "smart", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseATASmart(t *testing.T) {
	for _, tc := range []struct {
		name                              string
		withThresholds                    bool
		temp                              int
		hours, realloc, pending, unc, crc uint64
		warnings                          []string
	}{
		{name: "ata-ssd-healthy", withThresholds: true, temp: 34, hours: 12034, warnings: []string{}},
		{name: "ata-hdd-failing", withThresholds: true, temp: 58, hours: 58012, realloc: 1832, pending: 8, unc: 2, crc: 41,
			warnings: []string{
				"1832 reallocated sectors",
				"8 sectors pending reallocation",
				"2 offline uncorrectable sectors",
				"temperature 58 °C above 55 °C",
				"reallocated_sector_count at its failure threshold (130 ≤ 140)",
			}},
		{name: "ata-hdd-failing", withThresholds: false, temp: 58, hours: 58012, realloc: 1832, pending: 8, unc: 2, crc: 41,
			warnings: []string{
				"1832 reallocated sectors",
				"8 sectors pending reallocation",
				"2 offline uncorrectable sectors",
				"temperature 58 °C above 55 °C",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var thr []byte
			if tc.withThresholds {
				thr = readSmartFile(t, tc.name+".thresholds")
			}
			// As ReadSMART parses what ReadSMARTPages (and disks --capture) reads.
			pages := &SMARTPages{ATAData: readSmartFile(t, tc.name+".data"), ATAThresholds: thr}
			h, err := pages.Parse()
			if err != nil {
				t.Fatal(err)
			}
			if h.TemperatureC != tc.temp || h.PowerOnHours != tc.hours || h.Reallocated != tc.realloc ||
				h.Pending != tc.pending || h.Uncorrectable != tc.unc || h.CRCErrors != tc.crc {
				t.Errorf("got %+v", h)
			}
			if !reflect.DeepEqual(h.Warnings, tc.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", h.Warnings, tc.warnings)
			}
		})
	}
	bad := append([]byte(nil), readSmartFile(t, "ata-ssd-healthy.data")...)
	bad[100] ^= 1
	if _, err := ParseATASmart(bad, nil); err != ErrChecksum {
		t.Errorf("corrupt page: %v, want ErrChecksum", err)
	}
	if _, err := ParseATASmart(bad[:100], nil); err == nil {
		t.Error("short page accepted")
	}
}

func TestParseNVMeSmart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limits     Limits
		temp, used int
		hours      uint64
		warnings   []string
	}{
		{name: "nvme-healthy", temp: 35, used: 3, hours: 5123, warnings: []string{}},
		{name: "nvme-healthy", limits: Limits{NVMeMaxC: 30, PercentageUsed: 3}, temp: 35, used: 3, hours: 5123,
			warnings: []string{"temperature 35 °C above 30 °C", "3% of rated endurance used"}},
		{name: "nvme-worn", temp: 76, used: 97, hours: 40211, warnings: []string{
			"critical warning: spare capacity below threshold",
			"critical warning: reliability degraded by media or internal errors",
			"temperature 76 °C above 70 °C",
			"97% of rated endurance used",
			"3 media errors",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseNVMeSmart(readSmartFile(t, tc.name+".log"))
			if err != nil {
				t.Fatal(err)
			}
			h.Evaluate(tc.limits)
			if h.TemperatureC != tc.temp || h.PercentageUsed != tc.used || h.PowerOnHours != tc.hours {
				t.Errorf("got %+v", h)
			}
			if !reflect.DeepEqual(h.Warnings, tc.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", h.Warnings, tc.warnings)
			}
		})
	}
}

func FuzzParseATASmart(f *testing.F) {
	p := syntheticSmart()
	f.Add(p["ata-ssd-healthy.data"], p["ata-ssd-healthy.thresholds"])
	f.Add(p["ata-hdd-failing.data"], []byte{})
	f.Fuzz(func(t *testing.T, data, thr []byte) {
		h, err := ParseATASmart(data, thr)
		if err != nil {
			return
		}
		h.Evaluate(Limits{})
		if len(h.Attributes) > 30 {
			t.Fatalf("%d attributes", len(h.Attributes))
		}
	})
}

func FuzzParseNVMeSmart(f *testing.F) {
	p := syntheticSmart()
	f.Add(p["nvme-healthy.log"])
	f.Add(p["nvme-worn.log"])
	f.Fuzz(func(t *testing.T, page []byte) {
		h, err := ParseNVMeSmart(page)
		if err != nil {
			return
		}
		h.Evaluate(Limits{})
	})
}

// TestRecordedSmart parses the SMART pages that the Linux kernel returned
// for qemu's emulated SATA and NVMe disks through the same ioctls as on
// real drives (recorded by TestVirtualMachineDisks).
func TestRecordedSmart(t *testing.T) {
	ata := &SMARTPages{
		ATAData:       readSmartFile(t, "qemu-ata-sda.data"),
		ATAThresholds: readSmartFile(t, "qemu-ata-sda.thresholds"),
		ATAStatus:     readSmartFile(t, "qemu-ata-sda.status"),
	}
	h, err := ata.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != "ata" || h.Status != "passed" || h.TemperatureC != 31 || h.PowerOnHours != 1 || h.Reallocated != 0 || len(h.Attributes) != 7 || len(h.Warnings) != 0 {
		t.Errorf("qemu SATA disk: %+v", h)
	}
	h, err = (&SMARTPages{NVMeLog: readSmartFile(t, "qemu-nvme-nvme0n1.log")}).Parse()
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != "nvme" || h.Status != "passed" || h.TemperatureC != 50 || h.CriticalWarning != 0 || len(h.Warnings) != 0 {
		t.Errorf("qemu NVMe disk: %+v", h)
	}
}

// ataStatusSense builds the sense data a SAT layer returns for SMART
// RETURN STATUS with the registers LBA mid and high, in descriptor (as
// Linux's libata does) or fixed format.
func ataStatusSense(descriptor bool, mid, high byte) []byte {
	if descriptor {
		return []byte{0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14,
			0x09, 0x0c, 0, 0, 0, 0, 0, 0, 0, mid, 0, high, 0xa0, 0x50}
	}
	return []byte{0x70, 0, 0x01, 0, 0x50, 0, 0, 10, 0, 0, mid, high, 0x00, 0x1d, 0, 0, 0, 0}
}

func TestParseATAStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sense []byte
		want  string
		err   bool
	}{
		{"descriptor passed", ataStatusSense(true, 0x4f, 0xc2), "passed", false},
		{"descriptor failing", ataStatusSense(true, 0xf4, 0x2c), "failing", false},
		{"fixed passed", ataStatusSense(false, 0x4f, 0xc2), "passed", false},
		{"fixed failing", ataStatusSense(false, 0xf4, 0x2c), "failing", false},
		{"recorded from qemu", readSmartFile(t, "qemu-ata-sda.status"), "passed", false},
		{"other registers", ataStatusSense(true, 0, 0), "", true},
		{"descriptor without status return", []byte{0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 4, 0x02, 0x02, 0, 0}, "", true},
		{"descriptor cut short", ataStatusSense(true, 0x4f, 0xc2)[:12], "", true},
		{"empty", nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseATAStatus(tc.sense)
			if got != tc.want || (err != nil) != tc.err {
				t.Errorf("got %q, %v; want %q (error: %v)", got, err, tc.want, tc.err)
			}
		})
	}
	// A drive that says it is failing gets a warning even when no
	// attribute is past its threshold.
	p := syntheticSmart()
	h, err := (&SMARTPages{ATAData: p["ata-ssd-healthy.data"], ATAThresholds: p["ata-ssd-healthy.thresholds"], ATAStatus: ataStatusSense(true, 0xf4, 0x2c)}).Parse()
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "failing" || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "FAILING") {
		t.Errorf("failing drive: %+v", h)
	}
}

func TestSenseError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sense []byte
		want  string // "" no error
	}{
		{"registers available", ataStatusSense(true, 0x4f, 0xc2), ""},
		{"no sense data", nil, ""},
		{"invalid opcode (usb-storage bridge)", []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00}, ErrNoATAPassThrough.Error()},
		{"invalid field in CDB", []byte{0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0}, ErrNoATAPassThrough.Error()},
		{"aborted", []byte{0x72, 0x0b, 0x00, 0x00, 0, 0, 0, 0}, "aborted the SMART command"},
		{"medium error", []byte{0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0x00}, "sense key medium error, additional sense 11/00"},
		{"garbage", []byte{0x12, 0x34}, "unrecognised sense data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := senseError(tc.sense)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseATAStatus(f *testing.F) {
	f.Add(ataStatusSense(true, 0x4f, 0xc2))
	f.Add(ataStatusSense(false, 0xf4, 0x2c))
	f.Fuzz(func(t *testing.T, sense []byte) {
		ParseATAStatus(sense)
		senseError(sense)
	})
}
