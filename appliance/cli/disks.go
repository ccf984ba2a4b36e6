package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/arkbox/arkbox/hw"
)

// cmdDisks lists the disks attached to the machine, what is on them, their
// health and the board temperature.
func cmdDisks(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("arkbox disks", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	sysfs := fs.String("sysfs", "/sys", "sysfs root (tests: a fake tree)")
	dev := fs.String("dev", "/dev", "device directory")
	smart := fs.Bool("smart", true, "read SMART health (needs root)")
	capture := fs.String("capture", "", "write what the disk listing reads of sysfs to `FILE` (the tests' fake sysfs format), instead of listing")
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	if *capture != "" {
		return captureDisks(ctx, e, *capture, hw.DiscoverOptions{SysRoot: *sysfs, DevRoot: *dev}, *smart)
	}
	r, err := hw.Inventory(ctx, hw.InventoryOptions{SysRoot: *sysfs, DevRoot: *dev, SMART: *smart})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, r)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tBUS\tSIZE\tMODEL\tSERIAL\tCONTENT\tMOUNTED\tHEALTH")
	for _, d := range r.Disks {
		content := "?"
		if d.Content != nil {
			content = string(d.Content.Origin)
			if m := d.Content.PoolMember(); m != nil && len(m.Pool) >= 8 {
				content = "pool " + m.Pool[:8]
			} else if d.Content.Table != "" {
				content += " (" + d.Content.Table + ")"
			}
		} else if d.ProbeError != "" {
			content = "unreadable"
		}
		health := "-"
		switch {
		case d.Health != nil && len(d.Health.Warnings) == 0:
			health = "ok"
			if d.Health.TemperatureC >= 0 {
				health += fmt.Sprintf(" %d°C", d.Health.TemperatureC)
			}
		case d.Health != nil:
			health = fmt.Sprintf("%d warning(s)", len(d.Health.Warnings))
		case d.HealthError != "":
			health = "unknown"
		}
		mounted := strings.Join(d.Mounted, ",")
		if mounted == "" {
			mounted = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f GB\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Transport, float64(d.SizeBytes)/1e9,
			orDash(d.Model), orDash(d.Serial), content, mounted, health)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, z := range r.Thermal {
		fmt.Fprintf(e.stdout, "temperature %s (%s): %.1f °C\n", z.Name, z.Type, z.Celsius)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(e.stdout, "warning: %s\n", w)
	}
	for _, d := range r.Disks {
		if d.HealthError != "" {
			fmt.Fprintf(e.stdout, "note: %s (%s): no SMART health: %s\n", d.Name, d.Identity(), d.HealthError)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// captureDisks writes hw.CaptureSysfs's record of the disks to file and,
// with SMART, each disk's raw SMART pages beside it (FILE.DISK.ata.data,
// FILE.DISK.ata.thresholds, FILE.DISK.ata.status, FILE.DISK.nvme.log: the formats of
// hw/testdata/smart).
func captureDisks(ctx context.Context, e *env, file string, opts hw.DiscoverOptions, smart bool) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("disks --capture: %w", err)
	}
	if err := hw.CaptureSysfs(ctx, opts, f); err != nil {
		f.Close()
		return fmt.Errorf("disks --capture %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("disks --capture %s: %w", file, err)
	}
	if !smart {
		return nil
	}
	disks, err := hw.Discover(ctx, hw.DiscoverOptions{SysRoot: opts.SysRoot, DevRoot: opts.DevRoot, MountInfo: "-"})
	if err != nil {
		return err
	}
	for _, d := range disks {
		pages, err := hw.ReadSMARTPages(ctx, d)
		if err != nil {
			fmt.Fprintf(e.stderr, "disks --capture: no SMART pages of %s: %v\n", d.Name, err)
			continue
		}
		for suffix, b := range map[string][]byte{"ata.data": pages.ATAData, "ata.thresholds": pages.ATAThresholds, "ata.status": pages.ATAStatus, "nvme.log": pages.NVMeLog} {
			if b == nil {
				continue
			}
			if err := os.WriteFile(file+"."+d.Name+"."+suffix, b, 0o644); err != nil {
				return fmt.Errorf("disks --capture: %w", err)
			}
		}
	}
	return nil
}
