# bench/read-report.awk — the reading-back table of bench/sftp.sh.
#
# Input (the file named on the command line): RUN \t SERVER \t GET_S — one
# timed `sftp get` of the real-data file per server and run.
# readfile: RUN \t RESTIC_RESTORE_S \t SHARE_32K_MBPS \t SHARE_1M_MBPS per run.
# Variables: runs, bytes (the file's size), label. Medians over the runs.

function add(name, val) { vals[name] = ((name in vals) ? vals[name] " " : "") val }

function med(name) { return (name in vals) ? median(vals[name]) : "" }

function fmt(x, f) { return (x == "") ? "–" : sprintf(f, x) }

{ add("get_" $2, bytes / $3 / 1e6) }

END {
	while ((getline line < readfile) > 0) {
		split(line, f, "\t")
		add("restic", bytes / f[2] / 1e6)
		add("s32", f[3])
		add("s1m", f[4])
		add("ratio32", f[3] / (bytes / f[2] / 1e6))
	}
	ga = med("get_arkbox"); go = med("get_openssh"); rs = med("restic")
	printf "| reading back: %s (median of %d) | MB/s | ratio |\n", label, runs
	print "|---|--:|--:|"
	printf "| arkbox `sftp get` (committed file) | %s | %s of OpenSSH |\n", fmt(ga, "%.1f"), fmt((go > 0) ? ga / go : "", "%.2f×")
	printf "| OpenSSH `sftp get` (plain file) | %s | |\n", fmt(go, "%.1f")
	printf "| arkbox share read, 32 KiB requests, no SSH | %s | %s of restic |\n", fmt(med("s32"), "%.1f"), fmt(med("ratio32"), "%.2f×")
	printf "| arkbox share read, 1 MiB requests, no SSH | %s | %s of restic |\n", fmt(med("s1m"), "%.1f"), fmt((rs > 0) ? med("s1m") / rs : "", "%.2f×")
	printf "| restic restore | %s | |\n", fmt(rs, "%.1f")
	print ""
	r = med("ratio32")
	printf "Target: a clean file reads at least as fast as restic restores it: share read by 32 KiB ÷ restic restore = %s (%s).\n",
		fmt(r, "%.2f×"), (r == "") ? "not measured" : ((r >= 1) ? "met" : sprintf("missed by %.0f %%", (1 - r) * 100))
	print "share read: storage/sharefs's BenchmarkReadClean on the same file in a 2+1 pool of three folders (the path every"
	print "protocol reads through, verified chunk by chunk, with read-ahead); restic restore: the file from a restic repository"
	print "on the same disk to a folder. `sftp get` adds SSH (each server's negotiated cipher) and writing the copy."
}
