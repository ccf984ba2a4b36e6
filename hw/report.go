package hw

import (
	"context"
	"fmt"
)

// Report is everything `arkbox disks` prints: the disks with what is on
// them and their health, and the board's temperatures.
type Report struct {
	Disks      []DiskReport  `json:"disks"`
	Thermal    []ThermalZone `json:"thermal"`
	MaxCelsius *float64      `json:"max_celsius,omitempty"`
	Warnings   []string      `json:"warnings"` // one line per problem, naming the disk
}

// DiskReport is one disk of a Report.
type DiskReport struct {
	Disk
	Health      *Health `json:"health,omitempty"`
	HealthError string  `json:"health_error,omitempty"`
}

// InventoryOptions says where Inventory looks and what it reads.
type InventoryOptions struct {
	SysRoot   string // "" means "/sys"
	DevRoot   string // "" means "/dev"
	MountInfo string // "" means "/proc/self/mountinfo", "-" none
	// SMART reads each disk's health (needs root and real disks; a
	// disk or USB bridge that cannot answer gets a HealthError).
	SMART bool
	// ReadSMART replaces the SMART reader (tests); default ReadSMART.
	ReadSMART func(context.Context, Disk) (*Health, error)
	Limits    Limits
}

// Inventory discovers the disks, probes what is on them, optionally reads
// their SMART health, and reads the board temperature.
func Inventory(ctx context.Context, o InventoryOptions) (*Report, error) {
	disks, err := Discover(ctx, DiscoverOptions{SysRoot: o.SysRoot, DevRoot: o.DevRoot, MountInfo: o.MountInfo, Probe: true})
	if err != nil {
		return nil, err
	}
	r := &Report{Disks: []DiskReport{}, Thermal: []ThermalZone{}, Warnings: []string{}}
	read := o.ReadSMART
	if read == nil {
		read = ReadSMART
	}
	for _, d := range disks {
		dr := DiskReport{Disk: d}
		if o.SMART {
			h, err := read(ctx, d)
			if err != nil {
				dr.HealthError = err.Error()
			} else {
				h.Evaluate(o.Limits)
				dr.Health = h
				for _, w := range h.Warnings {
					r.Warnings = append(r.Warnings, fmt.Sprintf("%s (%s): %s", d.Name, d.Identity(), w))
				}
			}
		}
		if d.ReadOnly {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s (%s): write-protected", d.Name, d.Identity()))
		}
		r.Disks = append(r.Disks, dr)
	}
	sysRoot := o.SysRoot
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	if zones, err := ReadThermal(sysRoot); err == nil && zones != nil {
		r.Thermal = zones
		if m, ok := MaxCelsius(zones); ok {
			r.MaxCelsius = &m
		}
	}
	return r, nil
}
