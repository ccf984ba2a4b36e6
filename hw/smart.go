package hw

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ATAAttribute is one entry of the ATA SMART attribute table.
type ATAAttribute struct {
	ID        uint8  `json:"id"`
	Name      string `json:"name,omitempty"`
	Flags     uint16 `json:"flags"`
	Current   uint8  `json:"current"`
	Worst     uint8  `json:"worst"`
	Threshold uint8  `json:"threshold,omitempty"` // from the thresholds page, if read
	Raw       uint64 `json:"raw"`                 // 48-bit raw value
}

// Health is a disk's SMART health: the common figures, the raw details,
// and the warnings that Evaluate derived from them.
type Health struct {
	Kind            string         `json:"kind"`                      // "ata" or "nvme"
	TemperatureC    int            `json:"temperature_c"`             // -1: unknown
	PowerOnHours    uint64         `json:"power_on_hours"`            //
	PowerCycles     uint64         `json:"power_cycles"`              //
	Reallocated     uint64         `json:"reallocated_sectors"`       // ATA 5
	Pending         uint64         `json:"pending_sectors"`           // ATA 197
	Uncorrectable   uint64         `json:"offline_uncorrectable"`     // ATA 198
	CRCErrors       uint64         `json:"crc_errors"`                // ATA 199: cable or USB bridge trouble
	CriticalWarning uint8          `json:"critical_warning"`          // NVMe bit field
	PercentageUsed  int            `json:"percentage_used"`           // NVMe endurance estimate, may exceed 100
	AvailableSpare  int            `json:"available_spare"`           // NVMe, percent
	SpareThreshold  int            `json:"available_spare_threshold"` // NVMe, percent
	MediaErrors     uint64         `json:"media_errors"`              // NVMe
	UnsafeShutdowns uint64         `json:"unsafe_shutdowns"`          // NVMe
	Attributes      []ATAAttribute `json:"attributes,omitempty"`      // ATA only
	// Status is the drive's own overall assessment: "passed" or
	// "failing" (ATA SMART RETURN STATUS: a pre-failure attribute past
	// its threshold; NVMe: a critical warning bit set), "" when the
	// drive or its bridge did not say.
	Status   string   `json:"overall_status,omitempty"`
	Warnings []string `json:"warnings"` // empty: healthy
}

// ATA attribute ids that arkbox looks at.
const (
	ATAReallocated   = 5
	ATAPowerOnHours  = 9
	ATAPowerCycles   = 12
	ATAAirflowTemp   = 190
	ATATemperature   = 194
	ATAPending       = 197
	ATAUncorrectable = 198
	ATACRCErrors     = 199
)

var ataNames = map[uint8]string{
	1: "raw_read_error_rate", 3: "spin_up_time", 4: "start_stop_count", 5: "reallocated_sector_count",
	7: "seek_error_rate", 9: "power_on_hours", 10: "spin_retry_count", 12: "power_cycle_count",
	177: "wear_leveling_count", 187: "reported_uncorrectable", 188: "command_timeout",
	190: "airflow_temperature", 192: "power_off_retract_count", 193: "load_cycle_count",
	194: "temperature", 196: "reallocation_event_count", 197: "current_pending_sector",
	198: "offline_uncorrectable", 199: "udma_crc_error_count", 231: "ssd_life_left",
	233: "media_wearout_indicator", 241: "total_lbas_written", 242: "total_lbas_read",
}

// SMART page sizes and layout.
const (
	smartPageSize   = 512
	ataAttrOffset   = 2
	ataAttrSize     = 12
	ataAttrCount    = 30
	ataChecksumByte = 511
)

// ErrChecksum is returned for an ATA SMART page whose bytes do not sum to
// zero (modulo 256).
var ErrChecksum = errors.New("smart: page checksum mismatch")

func ataChecksumOK(page []byte) bool {
	var s byte
	for _, b := range page[:smartPageSize] {
		s += b
	}
	return s == 0
}

// ParseATASmart decodes an ATA SMART READ DATA page (512 bytes) and,
// if thresholds is not nil, the matching READ THRESHOLDS page. A page with
// a zero checksum byte is accepted (some USB bridges and old drives leave
// it out); any other checksum mismatch is an error.
func ParseATASmart(data, thresholds []byte) (*Health, error) {
	if len(data) < smartPageSize {
		return nil, fmt.Errorf("smart: ata data page has %d bytes, want %d", len(data), smartPageSize)
	}
	if data[ataChecksumByte] != 0 && !ataChecksumOK(data) {
		return nil, ErrChecksum
	}
	th := map[uint8]uint8{}
	if len(thresholds) >= smartPageSize {
		for i := 0; i < ataAttrCount; i++ {
			e := thresholds[ataAttrOffset+i*ataAttrSize:]
			if e[0] != 0 {
				th[e[0]] = e[1]
			}
		}
	}
	h := &Health{Kind: "ata", TemperatureC: -1}
	for i := 0; i < ataAttrCount; i++ {
		e := data[ataAttrOffset+i*ataAttrSize : ataAttrOffset+(i+1)*ataAttrSize]
		if e[0] == 0 {
			continue
		}
		raw := uint64(e[5]) | uint64(e[6])<<8 | uint64(e[7])<<16 | uint64(e[8])<<24 | uint64(e[9])<<32 | uint64(e[10])<<40
		a := ATAAttribute{ID: e[0], Name: ataNames[e[0]], Flags: binary.LittleEndian.Uint16(e[1:3]),
			Current: e[3], Worst: e[4], Threshold: th[e[0]], Raw: raw}
		h.Attributes = append(h.Attributes, a)
		switch a.ID {
		case ATAReallocated:
			h.Reallocated = raw & 0xffffffff
		case ATAPowerOnHours:
			h.PowerOnHours = raw & 0xffffffff // some drives keep minutes in the high bytes
		case ATAPowerCycles:
			h.PowerCycles = raw
		case ATATemperature:
			h.TemperatureC = int(raw & 0xff) // the low byte is the current temperature; higher bytes min/max
		case ATAAirflowTemp:
			if h.TemperatureC < 0 {
				h.TemperatureC = int(raw & 0xff)
			}
		case ATAPending:
			h.Pending = raw & 0xffffffff
		case ATAUncorrectable:
			h.Uncorrectable = raw & 0xffffffff
		case ATACRCErrors:
			h.CRCErrors = raw & 0xffffffff
		}
	}
	return h, nil
}

// NVMe critical warning bits (SMART / Health Information log, byte 0).
const (
	NVMeWarnSpare       = 1 << 0
	NVMeWarnTemperature = 1 << 1
	NVMeWarnReliability = 1 << 2
	NVMeWarnReadOnly    = 1 << 3
	NVMeWarnVolatile    = 1 << 4
	NVMeWarnPMR         = 1 << 5
)

// ParseNVMeSmart decodes the NVMe SMART / Health Information log page
// (log identifier 02h, 512 bytes).
func ParseNVMeSmart(page []byte) (*Health, error) {
	if len(page) < smartPageSize {
		return nil, fmt.Errorf("smart: nvme log page has %d bytes, want %d", len(page), smartPageSize)
	}
	u128 := func(off int) uint64 {
		// Counters are 128-bit; saturate what does not fit in 64 bits.
		lo := binary.LittleEndian.Uint64(page[off:])
		hi := binary.LittleEndian.Uint64(page[off+8:])
		if hi != 0 {
			return ^uint64(0)
		}
		return lo
	}
	h := &Health{Kind: "nvme", TemperatureC: -1}
	h.CriticalWarning = page[0]
	h.Status = "passed"
	if h.CriticalWarning != 0 {
		h.Status = "failing"
	}
	if k := int(binary.LittleEndian.Uint16(page[1:3])); k > 0 {
		h.TemperatureC = k - 273
	}
	h.AvailableSpare = int(page[3])
	h.SpareThreshold = int(page[4])
	h.PercentageUsed = int(page[5])
	h.PowerCycles = u128(112)
	h.PowerOnHours = u128(128)
	h.UnsafeShutdowns = u128(144)
	h.MediaErrors = u128(160)
	return h, nil
}

// Limits are the thresholds of Evaluate.
type Limits struct {
	ATAMaxC        int // default 55 °C: hard disks age fast above that
	NVMeMaxC       int // default 70 °C
	PercentageUsed int // default 90
}

func (l Limits) orDefault() Limits {
	if l.ATAMaxC == 0 {
		l.ATAMaxC = 55
	}
	if l.NVMeMaxC == 0 {
		l.NVMeMaxC = 70
	}
	if l.PercentageUsed == 0 {
		l.PercentageUsed = 90
	}
	return l
}

// Evaluate fills h.Warnings with what a person should act on: sectors
// reallocated, pending or uncorrectable, a temperature above the limit,
// attributes at or below their failure threshold, NVMe critical warnings,
// spare below threshold and wear at or above the limit.
func (h *Health) Evaluate(l Limits) {
	l = l.orDefault()
	w := []string{}
	add := func(format string, a ...any) { w = append(w, fmt.Sprintf(format, a...)) }
	switch h.Kind {
	case "ata":
		if h.Status == "failing" {
			add("the drive's own SMART assessment is FAILING: back up what is on it and replace it")
		}
		if h.Reallocated > 0 {
			add("%d reallocated sectors", h.Reallocated)
		}
		if h.Pending > 0 {
			add("%d sectors pending reallocation", h.Pending)
		}
		if h.Uncorrectable > 0 {
			add("%d offline uncorrectable sectors", h.Uncorrectable)
		}
		if h.TemperatureC > l.ATAMaxC {
			add("temperature %d °C above %d °C", h.TemperatureC, l.ATAMaxC)
		}
		for _, a := range h.Attributes {
			// A threshold of 0 means "never fails"; 0xFE/0xFF are invalid.
			if a.Threshold != 0 && a.Threshold < 0xfe && a.Current != 0 && a.Current <= a.Threshold {
				name := a.Name
				if name == "" {
					name = fmt.Sprintf("attribute %d", a.ID)
				}
				add("%s at its failure threshold (%d ≤ %d)", name, a.Current, a.Threshold)
			}
		}
	case "nvme":
		cw := h.CriticalWarning
		for _, b := range []struct {
			bit uint8
			msg string
		}{
			{NVMeWarnSpare, "spare capacity below threshold"},
			{NVMeWarnTemperature, "temperature out of range"},
			{NVMeWarnReliability, "reliability degraded by media or internal errors"},
			{NVMeWarnReadOnly, "media placed in read-only mode"},
			{NVMeWarnVolatile, "volatile memory backup failed"},
			{NVMeWarnPMR, "persistent memory region read-only"},
		} {
			if cw&b.bit != 0 {
				add("critical warning: %s", b.msg)
			}
		}
		if h.TemperatureC > l.NVMeMaxC {
			add("temperature %d °C above %d °C", h.TemperatureC, l.NVMeMaxC)
		}
		if h.PercentageUsed >= l.PercentageUsed {
			add("%d%% of rated endurance used", h.PercentageUsed)
		}
		if h.MediaErrors > 0 {
			add("%d media errors", h.MediaErrors)
		}
	}
	h.Warnings = w
}

// SMARTPages are a disk's raw SMART pages, as the drive returned them:
// the ATA SMART READ DATA and READ THRESHOLDS sectors, or the NVMe SMART /
// Health Information log.
type SMARTPages struct {
	ATAData       []byte
	ATAThresholds []byte // nil when the drive or bridge refused it
	ATAStatus     []byte // sense data of SMART RETURN STATUS, holding the ATA registers; nil when refused
	NVMeLog       []byte
}

// Parse decodes the pages and evaluates them with default limits.
func (p *SMARTPages) Parse() (*Health, error) {
	var (
		h   *Health
		err error
	)
	if p.NVMeLog != nil {
		h, err = ParseNVMeSmart(p.NVMeLog)
	} else {
		h, err = ParseATASmart(p.ATAData, p.ATAThresholds)
		if err == nil && p.ATAStatus != nil {
			h.Status, err = ParseATAStatus(p.ATAStatus)
		}
	}
	if err != nil {
		return nil, err
	}
	h.Evaluate(Limits{})
	return h, nil
}

// ErrNoATAPassThrough is returned when a disk, or the USB bridge in front
// of it, refuses SCSI ATA PASS-THROUGH: its SMART health cannot be read.
var ErrNoATAPassThrough = errors.New("the disk or its USB bridge does not pass ATA commands through, so its SMART health cannot be read")

// senseKeys names the SCSI sense keys arkbox meets.
var senseKeys = map[byte]string{0: "no sense", 1: "recovered error", 2: "not ready", 3: "medium error",
	4: "hardware error", 5: "illegal request", 6: "unit attention", 0xb: "aborted command"}

// parseSense returns the sense key and additional sense code and qualifier
// of fixed (70h/71h) or descriptor (72h/73h) format sense data.
func parseSense(sense []byte) (key, asc, ascq byte, ok bool) {
	if len(sense) < 4 {
		return 0, 0, 0, false
	}
	switch sense[0] & 0x7f {
	case 0x70, 0x71:
		if len(sense) < 14 {
			return sense[2] & 0x0f, 0, 0, len(sense) >= 3
		}
		return sense[2] & 0x0f, sense[12], sense[13], true
	case 0x72, 0x73:
		return sense[1] & 0x0f, sense[2], sense[3], true
	}
	return 0, 0, 0, false
}

// senseError says what CHECK CONDITION sense data of an ATA PASS-THROUGH
// command means: nil when it only carries the ATA registers ("ATA
// pass-through information available", 00h/1Dh, or no sense at all),
// ErrNoATAPassThrough when the command was refused as invalid, otherwise
// an error naming the sense key and code.
func senseError(sense []byte) error {
	key, asc, ascq, ok := parseSense(sense)
	switch {
	case !ok:
		if len(sense) == 0 {
			return nil
		}
		return fmt.Errorf("unrecognised sense data % x", sense)
	case key <= 1 && (asc == 0 && (ascq == 0 || ascq == 0x1d)):
		return nil
	case key == 5 && (asc == 0x20 || asc == 0x24):
		return ErrNoATAPassThrough
	case key == 0xb:
		return fmt.Errorf("the drive aborted the SMART command (SMART may be disabled on it): sense %02x/%02x", asc, ascq)
	}
	name := senseKeys[key]
	if name == "" {
		name = fmt.Sprintf("%#x", key)
	}
	return fmt.Errorf("sense key %s, additional sense %02x/%02x", name, asc, ascq)
}

// ParseATAStatus decodes the answer to SMART RETURN STATUS: the ATA
// registers LBA mid and LBA high that the SCSI layer returned in the
// sense data (an ATA Status Return descriptor in descriptor format, the
// command-specific bytes in fixed format). 4Fh/C2h: "passed"; F4h/2Ch: a
// threshold was exceeded, "failing".
func ParseATAStatus(sense []byte) (string, error) {
	var mid, high byte
	found := false
	switch {
	case len(sense) >= 8 && sense[0]&0x7f == 0x72:
		end := min(len(sense), 8+int(sense[7]))
		for off := 8; off+2 <= end; off += 2 + int(sense[off+1]) {
			d := sense[off:]
			if d[0] == 0x09 && off+14 <= end {
				mid, high, found = d[9], d[11], true
				break
			}
		}
	case len(sense) >= 14 && sense[0]&0x7f == 0x70:
		// SAT fixed format: bytes 9..11 hold LBA (7:0), (15:8), (23:16),
		// that is LBA low, mid and high.
		mid, high, found = sense[10], sense[11], true
	}
	if !found {
		return "", fmt.Errorf("smart: return status: no ATA registers in sense data % x", sense)
	}
	switch {
	case mid == 0x4f && high == 0xc2:
		return "passed", nil
	case mid == 0xf4 && high == 0x2c:
		return "failing", nil
	}
	return "", fmt.Errorf("smart: return status: unexpected registers LBA mid %#02x, high %#02x", mid, high)
}
