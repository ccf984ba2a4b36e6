// Package hw is everything of the appliance that touches /sys and /dev: it
// discovers block devices and what is on them, watches for disks being
// plugged in and out, adopts (partitions and formats) a new disk on request,
// mounts filesystems by UUID, reads SMART health, the board temperature and
// drives the Raspberry Pi's activity LED.
//
// Every function takes the roots it reads (the sysfs root, normally "/sys";
// the device directory, normally "/dev"; the mountinfo file) as parameters,
// so that tests run against fake trees and image files. hw imports nothing
// else of arkbox.
package hw
