# bench/report.awk — tables and JSON from the per-run records of bench/run.sh.
#
# Input: RUN \t SCENARIO \t TOOL \t WALL \t USER \t SYS \t MAXRSS_KIB \t SOURCE_BYTES \t REPO_BYTES \t ADDED_BYTES \t OTHERS
# ("-" where a figure does not apply; OTHERS = cores busy with other work during the command).
# Variables: json (output path), meta (JSON members to put first), runs, cpus,
# usr/old/new (data set descriptions for the titles).
# Tables go to stdout; medians are per figure, over the runs.

function add(k, name, val,   prev) {
	if (val == "-") return
	# (mawk creates the element on the left before it evaluates the right side)
	prev = ((k, name) in vals) ? vals[k, name] " " : ""
	vals[k, name] = prev val
}

function med(s, t, name) { return ((s, t, name) in M) ? M[s, t, name] : "" }

function fmt(x, f) { return (x == "") ? "-" : sprintf(f, x) }

function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : a / b }

# row(s, t, label, r1, r2): one table line.
function row(s, t, label, r1, r2,   w) {
	w = med(s, t, "wall")
	printf "%-12s %8s  %-23s %8s %8s %8s %9s %9s %10s %10s\n", label,
		fmt(w, "%.2f"), perrun[s, t], fmt(med(s, t, "cpu"), "%.2f"),
		fmt(med(s, t, "rss") == "" ? "" : med(s, t, "rss") / 1024, "%.0f"),
		fmt(med(s, t, "mbps"), "%.1f"),
		fmt(med(s, t, "repo") == "" ? "" : med(s, t, "repo") / 1048576, "%.1f"),
		fmt(med(s, t, "added") == "" ? "" : med(s, t, "added") / 1048576, "%.2f"),
		fmt(r1, "%.2f"), fmt(r2, "%.2f")
}

function header(title, h1, h2) {
	printf "\n%s\n", title
	printf "%-12s %8s  %-23s %8s %8s %8s %9s %9s %10s %10s\n", "tool", "wall s", "wall s per run",
		"CPU s", "RSS MiB", "MB/s", "repo MiB", "added MiB", h1, h2
}

# table(s, title, sizefig): the tools of scenario s; on every row but arkbox's, how arkbox
# compares with that row: speed-up (row wall / arkbox wall, >1 = arkbox faster) and size
# (arkbox sizefig / row sizefig, <1 = arkbox smaller).
function table(s, title, sizefig,   i, t, aw, as) {
	if (!((s) in seen_s)) return
	header(title, "speed-up x", sizefig == "" ? "" : "size x")
	aw = med(s, "arkbox", "wall")
	as = (sizefig == "") ? "" : med(s, "arkbox", sizefig)
	for (i = 1; i <= ntools; i++) {
		t = tools[i]
		if (!((s, t) in seen)) continue
		if (t == "arkbox") row(s, t, t, "", "")
		else row(s, t, t, ratio(med(s, t, "wall"), aw), sizefig == "" ? "" : ratio(as, med(s, t, sizefig)))
	}
}

BEGIN {
	ntools = split("arkbox restic kopia tar|zstd-1", tools, " ")
}

{
	r = $1; s = $2; t = $3
	cpu = $5 + $6
	k = s SUBSEP t
	seen[k] = 1
	seen_s[s] = 1
	add(k, "wall", $4); add(k, "user", $5); add(k, "sys", $6); add(k, "cpu", cpu)
	add(k, "rss", $7); add(k, "repo", $9); add(k, "added", $10)
	if ($4 > 0 && $8 != "-") add(k, "mbps", $8 / $4 / 1e6)
	prev = (k in perrun) ? perrun[k] "/" : ""
	perrun[k] = prev sprintf("%.1f", $4)
	if (!(k in order)) { order[k] = ++nkeys; keys[nkeys] = k }
	res[NR] = sprintf("{\"run\": %d, \"scenario\": \"%s\", \"tool\": \"%s\", \"wall_s\": %.2f, \"user_s\": %.2f, \"sys_s\": %.2f, \"cpu_s\": %.2f, \"max_rss_kib\": %d, \"source_bytes\": %s, \"repo_bytes\": %s, \"added_bytes\": %s, \"other_cores_busy\": %.2f}",
		r, s, t, $4, $5, $6, cpu, $7, ($8 == "-" ? "null" : $8), ($9 == "-" ? "null" : $9), ($10 == "-" ? "null" : $10), $11)
	others = (NR > 1 ? others " " : "") $11
	nres = NR
}

END {
	split("wall user sys cpu rss mbps repo added", figs, " ")
	for (i = 1; i <= nkeys; i++)
		for (f = 1; f <= 8; f++)
			if ((keys[i], figs[f]) in vals) M[keys[i], figs[f]] = median(vals[keys[i], figs[f]])
	# scenario 5 compares the pool with the single-disk repository of scenario 1
	if (("s5", "arkbox-2+1") in seen) {
		for (f = 1; f <= 8; f++)
			if (("s1", "arkbox", figs[f]) in M) M["s5", "arkbox", figs[f]] = M["s1", "arkbox", figs[f]]
		perrun["s5", "arkbox"] = perrun["s1", "arkbox"]
		seen["s5", "arkbox"] = 1
	}

	printf "arkbox vs restic and kopia: median of %d run(s); MB = 10^6 bytes, MiB = 2^20 bytes\n", runs
	table("s1", "1. Initial backup of the " usr, "repo")
	table("s2", "2. Backup of " new " over " old " (same folder, same repository); added = repository growth", "added")
	table("s3", "3. Unchanged rescan of " new "; added = repository growth", "")
	table("s4", "4. Restore of the latest snapshot (" new ") into an empty folder, checked with diff -r", "")
	if (("s5", "arkbox-2+1") in seen) {
		header("5. Initial backup of the " usr ": arkbox 1 disk vs a 2+1 pool over three folders", "time x", "size x")
		row("s5", "arkbox", "1 disk", "", "")
		row("s5", "arkbox-2+1", "2+1 pool",
			ratio(med("s5", "arkbox-2+1", "wall"), med("s5", "arkbox", "wall")),
			ratio(med("s5", "arkbox-2+1", "repo"), med("s5", "arkbox", "repo")))
		print "time x, size x = pool / 1 disk (the pool stores 3/2 of the data by design)"
	}
	print ""
	print "speed-up x = that row's wall time / arkbox's (>1: arkbox is faster); size x = arkbox's bytes / that row's (<1: arkbox stores less)."
	print "CPU = user + system; RSS = peak resident set of the process (GNU time); repo = du -sb of the repository folder(s)."
	busy = median(others)
	printf "Other work on the machine kept a median of %.2f of its %d cores busy during the timed commands.", busy, cpus
	if (busy > 0.25) printf "\nWall times include waiting for a core then; CPU s is the steadier figure."
	printf "\n"

	if (json == "") exit
	print "{" > json
	while ((getline line < meta) > 0) print line > json
	print "  \"results\": [" > json
	for (i = 1; i <= nres; i++) printf "    %s%s\n", res[i], (i < nres ? "," : "") > json
	print "  ]," > json
	print "  \"medians\": [" > json
	for (i = 1; i <= nkeys; i++) {
		split(keys[i], st, SUBSEP)
		line = sprintf("{\"scenario\": \"%s\", \"tool\": \"%s\"", st[1], st[2])
		for (f = 1; f <= 8; f++)
			if ((keys[i], figs[f]) in M)
				line = line sprintf(", \"%s\": %s", figs[f] == "rss" ? "max_rss_kib" : figs[f] == "mbps" ? "mb_per_s" : figs[f] ~ /^(repo|added)$/ ? figs[f] "_bytes" : figs[f] "_s",
					figs[f] ~ /^(rss|repo|added)$/ ? sprintf("%.0f", M[keys[i], figs[f]]) : sprintf("%.3f", M[keys[i], figs[f]]))
		printf "    %s}%s\n", line, (i < nkeys ? "," : "") > json
	}
	print "  ]" > json
	print "}" > json
}
