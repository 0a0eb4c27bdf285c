#!/usr/bin/env bash
# keyholderd with ciphertexts in S3 (versitygw, POSIX backend, on loopback).
#
# For each size, a fresh keyholderd (SQLite, --blob s3://…) takes one
# record from a party and serves it back after approval and grant
# (bench/s3, streaming from and to the party); then the S3 client library
# alone (minio-go FPutObject/GetObject at its defaults) moves the same file
# to and from the same bucket. Reported: MB/s of each, the ratio (goal
# >= 0.8) and keyholderd's peak RSS (VmHWM; goal <= 64 MiB, flat from
# 64 MiB to 1 GiB). Then small-record uploads per second (1 KiB, 4 parties
# at once) with the S3 driver against the filesystem driver.
#
# versitygw: VERSITYGW (a binary), else the one .ci/run builds in
# ~/.cache/keyholder/versitygw, else built there now with `go install`.
#
# Usage: scripts/bench-s3.sh [SIZE...]   (default: 64M 1G)
# Settings: BENCH_RUNS (runs per transfer, best counts; default 2),
#           BENCH_SMALL_RECORDS (default 400), BENCH_DIR (default: /dev/shm
#           if it has room, else TMPDIR).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(64M 1G)
runs=${BENCH_RUNS:-2}
small=${BENCH_SMALL_RECORDS:-400}
vgw_version=v1.8.0

base=${BENCH_DIR:-}
if [ -z "$base" ]; then
	base=${TMPDIR:-/tmp}
	if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt $((6 << 20)) ]; then base=/dev/shm; fi
fi
work=$(mktemp -d "$base/keyholder-bench-s3.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

vgw=${VERSITYGW:-}
if [ -z "$vgw" ]; then
	vgw="${HOME:-/root}/.cache/keyholder/versitygw/bin-$vgw_version/versitygw"
	if [ ! -x "$vgw" ]; then
		echo "bench-s3: building versitygw $vgw_version (once)" >&2
		GOBIN="$(dirname "$vgw")" GOFLAGS=-buildvcs=false go install "github.com/versity/versitygw/cmd/versitygw@$vgw_version"
	fi
fi
CGO_ENABLED=0 go build -trimpath -o "$work/keyholderd" ./cmd/keyholderd
go build -o "$work/bench" ./bench/s3

free_port() { echo $((20000 + RANDOM % 20000)); }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "bench-s3: $1 does not answer" >&2; exit 1; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# versitygw, its data in the work directory.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
vport=$(free_port)
mkdir -p "$work/vgw"
ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
	"$vgw" --port "127.0.0.1:$vport" --quiet posix "$work/vgw" >"$work/vgw.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$vport/"
mkdir -p "$work/vgw/bench" # a bucket is a directory of the POSIX backend
s3="http://$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY@127.0.0.1:$vport"
blob="s3://bench/records?endpoint=http://127.0.0.1:$vport&region=us-east-1&path-style=true"
export KEYHOLDER_ADMIN_TOKEN="bench-admin-$RANDOM$RANDOM"

# start_keyholderd NAME BLOB: a fresh server; sets kpid and kurl.
start_keyholderd() {
	local port
	port=$(free_port)
	mkdir -p "$work/$1"
	"$work/keyholderd" serve --listen "127.0.0.1:$port" --data-dir "$work/$1" --blob "$2" \
		--max-record-size $((2 << 30)) --upload-rate 0 --access-rate 0 --auth-rate 0 --log-level warn 2>"$work/$1.log" &
	kpid=$!
	pids+=("$kpid")
	kurl="http://127.0.0.1:$port"
	wait_http "$kurl/readyz"
}
stop_keyholderd() { kill "$kpid"; wait "$kpid" 2>/dev/null || true; }

echo "keyholderd → versitygw $vgw_version (POSIX backend in $base), best of $runs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %10s %10s %7s %10s %10s %7s %9s\n' size "upload" "minio-go" ratio "download" "minio-go" ratio peak_rss
for size in "${sizes[@]}"; do
	n=$(numfmt --from=iec "$size")
	start_keyholderd "kh-$size" "$blob"
	eval "$("$work/bench" -server "$kurl" -s3 "$s3" -bucket bench -size "$n" -runs "$runs" -dir "$work" -workers 1)"
	hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$kpid/status")
	stop_keyholderd
	printf '%-6s %8s/s %8s/s %7s %8s/s %8s/s %7s %6s MiB\n' "$size" \
		"$(mbps "$BYTES" "$UPLOAD_S")MB" "$(mbps "$BYTES" "$BASE_UPLOAD_S")MB" "$(ratio "$BASE_UPLOAD_S" "$UPLOAD_S")" \
		"$(mbps "$BYTES" "$DOWNLOAD_S")MB" "$(mbps "$BYTES" "$BASE_DOWNLOAD_S")MB" "$(ratio "$BASE_DOWNLOAD_S" "$DOWNLOAD_S")" \
		"$((hwm / 1024))"
done
echo "(ratio: minio-go's time over keyholderd's, >= 0.8 is the goal; peak_rss: keyholderd's VmHWM)"

echo
printf '%-28s %12s\n' "1 KiB records, 4 parties" "uploads/s"
start_keyholderd kh-small-s3 "$blob"
eval "$("$work/bench" -server "$kurl" -small "$small" -workers 4)"
stop_keyholderd
s3_rate=$SMALL_PER_S
start_keyholderd kh-small-fs ""
eval "$("$work/bench" -server "$kurl" -small "$small" -workers 4)"
stop_keyholderd
printf '%-28s %12s\n' "S3 driver" "$s3_rate" "filesystem driver ($base)" "$SMALL_PER_S"
echo "S3/filesystem: $(ratio "$s3_rate" "$SMALL_PER_S")"
