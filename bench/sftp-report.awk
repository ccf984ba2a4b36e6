# bench/sftp-report.awk — markdown tables from the per-run records of bench/sftp.sh.
#
# Input: RUN \t DATASET \t SERVER \t UPLOAD_S \t CLIENT_CPU_S \t SERVER_CPU_UPLOAD_S \t COMMIT_S \t
#        PEAK_RSS_KIB \t STORED_BYTES \t OTHERS \t BYTES \t FILES \t SERVER_CPU_THEN_S
# ("-" where a figure does not apply). DATASET is random, real, small or again;
# SERVER arkbox or openssh. COMMIT_S is `arkbox snapshot` for arkbox, `sync` for OpenSSH.
# Variables: runs, rssfile (RUN \t START_KIB \t PEAK_KIB \t END_KIB per run),
# hwmreset (1 when the peak was reset before each upload), lrandom, lreal, lsmall,
# lagain (row labels). Medians are per figure, over the runs.

function add(k, name, val,   prev) {
	if (val == "-" || val == "") return
	prev = ((k, name) in vals) ? vals[k, name] " " : ""
	vals[k, name] = prev val
}

function med(d, s, name) { return ((d, s, name) in vals) ? median(vals[d, s, name]) : "" }

function fmt(x, f) { return (x == "") ? "–" : sprintf(f, x) }

function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : a / b }

function row(d, s, label,   name, up, mbps, fps, r, c, e2e, rss, st) {
	up = med(d, s, "up")
	mbps = med(d, s, "mbps")
	fps = (files[d] > 1) ? med(d, s, "fps") : ""
	r = (s == "arkbox") ? med(d, "pair", "ratio") : ""
	c = med(d, s, "commit")
	e2e = med(d, s, "e2e")
	rss = med(d, s, "rss")
	st = med(d, s, "stored")
	name = (s == "arkbox") ? "arkbox" : "OpenSSH"
	printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, name,
		fmt(up, "%.2f"), vals[d, s, "perrun"], fmt(mbps, "%.1f"), fmt(fps, "%.0f"), fmt(r, "%.2f"),
		fmt(c, "%.2f") (s == "arkbox" ? " (snapshot)" : " (sync)"), fmt(e2e, "%.1f"),
		fmt(med(d, s, "scpu"), "%.2f"), fmt(med(d, s, "scpu2"), "%.2f"),
		fmt(st == "" ? "" : st / 1048576, (d == "again") ? "%.3f" : "%.1f"),
		fmt(rss == "" ? "" : rss / 1024, "%.0f"), fmt(med(d, s, "others"), "%.2f")
}

# pr(d): the per-run ratios of data set d, in run order.
function pr(d,   v, n, i, j, x, out) {
	n = split(vals[d, "pair", "perrun"], v, " ")
	for (i = 2; i <= n; i++) {
		x = v[i]
		for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]
		v[j + 1] = x
	}
	out = ""
	for (i = 1; i <= n; i++) out = out (i > 1 ? " " : "") substr(v[i], index(v[i], ":") + 1)
	return out
}

function verdict(x, target,   p) {
	if (x == "") return "–"
	if (x >= target) return "met"
	p = (1 - x / target) * 100
	return sprintf("missed by %.0f %%", p)
}

{
	d = $2; s = $3
	add(d SUBSEP s, "up", $4)
	add(d SUBSEP s, "ccpu", $5)
	add(d SUBSEP s, "scpu", $6)
	add(d SUBSEP s, "scpu2", $13)
	if ($4 > 0) rate[$1, d, s] = $11 / $4
	add(d SUBSEP s, "commit", $7)
	add(d SUBSEP s, "rss", $8)
	add(d SUBSEP s, "stored", $9)
	add(d SUBSEP s, "others", $10)
	if ($4 > 0) {
		add(d SUBSEP s, "mbps", $11 / $4 / 1e6)
		add(d SUBSEP s, "fps", $12 / $4)
	}
	if ($4 + $7 > 0) add(d SUBSEP s, "e2e", $11 / ($4 + $7) / 1e6)
	add(d SUBSEP s, "perrun", sprintf("%.1f", $4))
	files[d] = $12
	if ($8 != "-" && $8 + 0 > maxrss) maxrss = $8 + 0
}

END {
	# arkbox/OpenSSH: the ratio of the two throughputs of the same run (the two
	# uploads follow each other), median over the runs.
	for (k in rate) {
		split(k, p, SUBSEP)
		if (p[3] == "arkbox" && ((p[1], p[2], "openssh") in rate) && rate[p[1], p[2], "openssh"] > 0) {
			add(p[2] SUBSEP "pair", "ratio", rate[k] / rate[p[1], p[2], "openssh"])
			add(p[2] SUBSEP "pair", "perrun", p[1] ":" sprintf("%.2f", rate[k] / rate[p[1], p[2], "openssh"]))
		}
	}
	label["random"] = lrandom; label["real"] = lreal; label["small"] = lsmall; label["again"] = lagain
	n = split("random real small again", order, " ")
	printf "| upload (median of %d) | server | upload s | per run | MB/s | files/s | arkbox/OpenSSH | then s | end-to-end MB/s | server CPU s upload | server CPU s then | stored MiB | peak RSS MiB | others |\n", runs
	print "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	for (i = 1; i <= n; i++) {
		d = order[i]
		if (!((d, "arkbox", "up") in vals)) continue
		row(d, "arkbox", label[d])
		row(d, "openssh", "")
	}

	while ((getline line < rssfile) > 0) {
		split(line, f, "\t")
		add("rss" SUBSEP "start", "", f[2])
		if (f[3] + 0 > maxrss) maxrss = f[3] + 0
	}
	newdata = 0
	while ((getline line < againfile) > 0) {
		split(line, f, "\t")
		add("again" SUBSEP "data", "", f[2]); add("again" SUBSEP "tree", "", f[3]); add("again" SUBSEP "unique", "", f[4])
		if (f[2] + 0 != 0) newdata = 1
	}
	rr = med("random", "pair", "ratio")
	rl = med("real", "pair", "ratio")
	rs = med("small", "pair", "ratio")
	ga = med("again", "arkbox", "stored")
	print ""
	print "| target | measured | |"
	print "|---|---|---|"
	printf "| large files, incompressible: arkbox ≥ 0.8× OpenSSH's throughput | %s× (runs %s) | %s |\n", fmt(rr, "%.2f"), pr("random"), verdict(rr, 0.8)
	printf "| large files, real data: arkbox ≥ 0.8× OpenSSH's throughput | %s× (runs %s) | %s |\n", fmt(rl, "%.2f"), pr("real"), verdict(rl, 0.8)
	printf "| small files: arkbox ≥ 0.5× OpenSSH's throughput | %s× (runs %s) | %s |\n", fmt(rs, "%.2f"), pr("small"), verdict(rs, 0.5)
	printf "| upload finished → snapshot committed (arkbox snapshot) | %s s, %s s, %s s, %s s | no target |\n",
		fmt(med("random", "arkbox", "commit"), "%.2f"), fmt(med("real", "arkbox", "commit"), "%.2f"),
		fmt(med("small", "arkbox", "commit"), "%.2f"), fmt(med("again", "arkbox", "commit"), "%.2f")
	printf "| re-uploading the unchanged tree adds nothing to the repository | %s bytes on the disks: %s new data blobs, %s new tree blobs (%s bytes before compression) | %s |\n",
		fmt(ga, "%.0f"), fmt(med("again", "data", ""), "%d"), fmt(med("again", "tree", ""), "%d"), fmt(med("again", "unique", ""), "%d"),
		(ga == "") ? "–" : (ga + 0 <= 0 ? "met" : (newdata ? "missed: new content" : "no new content; the new trees are metadata"))
	printf "| peak RSS of arkbox serve while ingesting ≤ 300 MiB | %s MiB (highest of the runs; after start %s MiB) | %s |\n",
		fmt(maxrss / 1024, "%.0f"), fmt(med("rss", "start", "") / 1024, "%.0f"),
		(maxrss == 0) ? "–" : (maxrss / 1024 <= 300 ? "met" : sprintf("missed by %.0f MiB", maxrss / 1024 - 300))
	print ""
	print "upload s: `sftp -b` from start to exit (login included), the median and every run; MB/s and files/s from it."
	print "arkbox/OpenSSH: arkbox's throughput ÷ OpenSSH's in the same run (uploads back to back), median over the runs."
	print "then s: what makes the upload durable — arkbox: `arkbox snapshot backups` (upload finished → snapshot"
	print "committed); OpenSSH: `sync`. end-to-end MB/s: bytes ÷ (upload s + then s)."
	print "server CPU s: user + system CPU of `arkbox serve`, or of OpenSSH's per-connection processes, during the upload and"
	print "during then (the kernel's write-back is nobody's)."
	print "stored MiB: growth of arkbox's repository (pool disk folders, 2+1), measured after the snapshot."
	if (hwmreset == 1) print "peak RSS MiB: VmHWM of `arkbox serve` over that upload and its snapshot (reset before each upload)."
	else print "peak RSS MiB: VmHWM of `arkbox serve` since its start (this kernel does not reset it)."
	print "others: cores busy with other work during the upload (this machine is shared)."
}
