#!/usr/bin/env bash
# Upload benchmark of keyholderd over loopback.
#
# For each size, a fresh server (SQLite, local push) receives one record
# uploaded with curl as multipart/form-data (metadata, body, statement,
# signature), the way a party uploads. The same file is hashed by
# `openssl dgst -sha256` (one SHA-256 pass with SHA extensions: the
# physical limit of an ingest that must hash every byte) and by `sha256sum`,
# in the same run, with the file in the page cache. Reported: MB/s of each
# and the ingest/openssl ratio (goal >= 0.6), and the server's peak RSS
# (VmHWM; goal <= 64 MiB, flat across sizes).
#
# Usage: scripts/bench-server.sh [SIZE...]   (default: 64M 256M 1G)
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(64M 256M 1G)
for t in curl openssl sha256sum; do
	command -v "$t" >/dev/null || { echo "bench-server: $t is required" >&2; exit 1; }
done

work=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -trimpath -o "$work/keyholderd" ./cmd/keyholderd
go build -o "$work/prep" ./bench/server/prep

bytes_of() { numfmt --from=iec "$1"; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

port=$((20000 + RANDOM % 20000))
url="http://127.0.0.1:$port"
export KEYHOLDER_ADMIN_TOKEN="bench-admin-$RANDOM$RANDOM"

printf '%-6s %12s %10s %10s %10s %8s %10s\n' size ciphertext openssl sha256sum keyholderd ratio peak_rss
for size in "${sizes[@]}"; do
	n=$(bytes_of "$size")
	data="$work/data-$size"
	mkdir -p "$data"
	"$work/keyholderd" serve --listen "127.0.0.1:$port" --data-dir "$data" \
		--max-record-size $((n + (64 << 20))) --upload-rate 0 --log-level warn 2>"$work/server-$size.log" &
	pid=$!
	for _ in $(seq 100); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

	eval "$("$work/prep" -server "$url" -size "$n" -dir "$work" -profile modern)"
	file="$work/body.pgp"
	sync # let prep's writes reach the disk before anything is timed
	fsize=$(stat -c %s "$file")

	openssl dgst -sha256 "$file" >/dev/null # warm the page cache
	t0=$(now); openssl dgst -sha256 "$file" >/dev/null; t1=$(now)
	t_ossl=$(elapsed "$t0" "$t1")
	t0=$(now); sha256sum "$file" >/dev/null; t1=$(now)
	t_sum=$(elapsed "$t0" "$t1")

	t0=$(now)
	code=$(curl -sS -o "$work/resp.json" -w '%{http_code}' -H 'Expect:' \
		-H "Authorization: Bearer $PARTY_TOKEN" \
		-F "metadata=@$work/metadata.json" -F "body=@$file" \
		-F "statement=@$work/statement.txt" -F "signature=@$work/signature.asc" \
		"$url/v1/users/$USER_ID/records")
	t1=$(now)
	t_up=$(elapsed "$t0" "$t1")
	if [ "$code" != 201 ]; then
		echo "bench-server: upload of $size failed: HTTP $code $(cat "$work/resp.json")" >&2
		exit 1
	fi
	grep -q "\"ciphertext_sha256\":\"$DATA_SHA256\"" "$work/resp.json" || { echo "bench-server: digest mismatch" >&2; exit 1; }
	hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

	r_ossl=$(mbps "$fsize" "$t_ossl")
	r_sum=$(mbps "$fsize" "$t_sum")
	r_up=$(mbps "$fsize" "$t_up")
	ratio=$(awk -v a="$t_ossl" -v b="$t_up" 'BEGIN { printf "%.2f", a / b }')
	printf '%-6s %12s %8s/s %8s/s %8s/s %8s %7s MiB\n' "$size" "$fsize" "${r_ossl}MB" "${r_sum}MB" "${r_up}MB" "$ratio" "$((hwm / 1024))"
	rm -rf "$data" "$file"
done
