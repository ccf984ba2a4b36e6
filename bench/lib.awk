# bench/lib.awk — functions the report scripts share (awk -f bench/lib.awk -f REPORT).

# median of a space-separated list of numbers ("" when empty).
function median(list,   v, n, i, j, x) {
	n = split(list, v, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++) {
		x = v[i] + 0
		for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]
		v[j + 1] = x
	}
	if (n % 2) return v[(n + 1) / 2] + 0
	return (v[n / 2] + v[n / 2 + 1]) / 2
}
