# bench/select.awk — choose the /usr data set (see README.md, "The /usr set").
#
# Input (read twice): TYPE \t SIZE \t PATH lines from `find /usr/share /usr/lib -printf`,
# sorted byte-wise by PATH. -v cap=MB caps the regular-file bytes (10^6 bytes per MB).
# Output: the selected paths, relative to /, in input order, for `tar -T`.
#
# A unit is an entry two levels below /usr/lib or /usr/share (/usr/lib/X/Y, with everything
# under it), or a non-directory entry one level below (/usr/lib/X). Units larger than a tenth
# of the cap are left out, so that no single package dominates the set. Each root first gets
# up to half the cap: its units in path order, a unit that does not fit in what is left being
# skipped (first fit). What is left of the cap is then filled the same way from the units not
# yet taken, /usr/lib's before /usr/share's.

function unit_of(path, parts, n) {
	n = split(path, parts, "/")
	if (n >= 5) return "/" parts[2] "/" parts[3] "/" parts[4] "/" parts[5]
	if (n == 4 && $1 != "d") return path
	return ""
}

function root_of(path, parts) {
	split(path, parts, "/")
	return parts[3]
}

function take(u, parts) {
	chosen[u] = 1
	total += size[u]
	# its ancestors, so that tar records their modes and times
	split(u, parts, "/")
	needed["/" parts[2] "/" parts[3]] = 1
	needed["/" parts[2] "/" parts[3] "/" parts[4]] = 1
}

# fill(r, budget): first fit of root r's units into budget bytes; returns the bytes taken.
function fill(r, budget,   i, u, got) {
	got = 0
	for (i = 1; i <= count[r]; i++) {
		u = units[r, i]
		if ((u in chosen) || size[u] > unitmax || got + size[u] > budget) continue
		take(u)
		got += size[u]
	}
	return got
}

function select_units() {
	capb = cap * 1e6
	unitmax = capb / 10
	total = 0
	fill("lib", capb / 2)
	fill("share", capb / 2)
	fill("lib", capb - total)
	fill("share", capb - total)
}

FNR == NR {
	u = unit_of($3)
	if (u == "") next
	if (!(u in size)) {
		size[u] = 0
		r = root_of($3)
		units[r, ++count[r]] = u
	}
	if ($1 == "f") size[u] += $2
	next
}

FNR == 1 { select_units() }

{
	u = unit_of($3)
	if ((u != "" && (u in chosen)) || (u == "" && ($3 in needed)))
		print substr($3, 2)
}
