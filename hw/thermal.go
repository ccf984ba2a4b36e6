package hw

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ThermalZone is one temperature sensor of the board.
type ThermalZone struct {
	Name    string  `json:"name"` // e.g. "thermal_zone0"
	Type    string  `json:"type"` // e.g. "cpu-thermal", "x86_pkg_temp"
	Celsius float64 `json:"celsius"`
}

// ReadThermal reads every SYSROOT/class/thermal/thermal_zone*/temp
// (millidegrees Celsius). Zones whose temperature cannot be read (some
// report EINVAL or ENODATA while idle) are left out. No zones is not an
// error: a VM has none.
func ReadThermal(sysRoot string) ([]ThermalZone, error) {
	dir := filepath.Join(sysRoot, "class", "thermal")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hw: read thermal zones in %s: %w", dir, err)
	}
	var zones []ThermalZone
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "thermal_zone") {
			continue
		}
		zdir := filepath.Join(dir, e.Name())
		raw := readAttr(zdir, "temp")
		milli, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			continue
		}
		zones = append(zones, ThermalZone{Name: e.Name(), Type: readAttr(zdir, "type"), Celsius: float64(milli) / 1000})
	}
	sort.Slice(zones, func(i, j int) bool { return zones[i].Name < zones[j].Name })
	return zones, nil
}

// MaxCelsius returns the highest temperature of zones, and false if there
// are none.
func MaxCelsius(zones []ThermalZone) (float64, bool) {
	if len(zones) == 0 {
		return 0, false
	}
	m := zones[0].Celsius
	for _, z := range zones[1:] {
		m = max(m, z.Celsius)
	}
	return m, true
}
