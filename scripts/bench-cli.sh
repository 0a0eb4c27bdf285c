#!/usr/bin/env bash
# Keyholder end-to-end benchmarks with real processes (keyholderd,
# device-sim, keyholder):
#
#   roundtrip  approval round trip p50/p99: PARTIES concurrent parties
#              upload RECORDS records to one user whose phone is a running
#              `device-sim run --auto-approve`; each record is timed from
#              upload done -> device notified -> approved -> the party's
#              wait returns. On SQLite, and on PostgreSQL when one is
#              reachable (BENCH_PG_DSN, default the local cluster).
#              Each database's CPU per approval and approvals/s are put
#              next to the floor measured in the same run on the same
#              database (bench/floor: the least the protocol's crypto,
#              HTTP exchanges and commits cost on this machine now).
#   bigfile    `keyholder seal` and `keyholder open` of a BIG_MIB file
#              against `gpg --encrypt` / `gpg --decrypt` of the same file
#              (Cv25519 key, AES-256, no compression), with peak RSS.
#
#   scripts/bench-cli.sh                 # both
#   scripts/bench-cli.sh roundtrip       # one
#
# Settings: RECORDS (1000), PARTIES (16), RECORD_SIZE (1024 bytes),
# POLL (20ms, the parties' wait poll interval), DEVICE_WORKERS (4: requests
# device-sim answers at once), BIG_MIB (1024), BENCH_RUNS (2: best of, for
# the big file), BENCH_DIR (default /dev/shm when it has room), BENCH_PG_DSN,
# BENCH_PROFILE (a directory: the CPU profiles of keyholderd, device-sim and
# the parties go there).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-1000}
PARTIES=${PARTIES:-16}
RECORD_SIZE=${RECORD_SIZE:-1024}
POLL=${POLL:-20ms}
DEVICE_WORKERS=${DEVICE_WORKERS:-4}
BENCH_RUNS=${BENCH_RUNS:-2}
BIG_MIB=${BIG_MIB:-1024}
BENCH_PG_DSN=${BENCH_PG_DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-cli: $*"; exit 1; }

pick_dir() {
	local need_kib=$(($1 * 1024)) d
	if [ -n "${BENCH_DIR:-}" ]; then echo "$BENCH_DIR"; return; fi
	for d in /dev/shm "${TMPDIR:-/tmp}" /tmp; do
		[ -d "$d" ] && [ -w "$d" ] || continue
		if [ "$(df -Pk "$d" | awk 'NR==2 {print $4}')" -gt "$need_kib" ]; then echo "$d"; return; fi
	done
	echo "${TMPDIR:-/tmp}"
}

WORK=$(mktemp -d "$(pick_dir $((3 * BIG_MIB + 512)))/keyholder-bench-cli.XXXXXX")
PIDS=()
PGDB=""
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "$PGDB" ]; then psql "$BENCH_PG_DSN" -qc "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

log "building into $WORK/bin"
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/" ./cmd/keyholderd ./cmd/keyholder ./cmd/device-sim ./cmd/device-sim/internal/roundtrip ./bench/floor
export PATH="$WORK/bin:$PATH"
export KEYHOLDER_ADMIN_TOKEN
KEYHOLDER_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'bench passphrase\n' >"$WORK/pass"

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	die "no free port"
}

# start_stack NAME [keyholderd flags...]: a server, a user, an enrolled
# device-sim --auto-approve and a registered party (KEYHOLDER_HOME).
# Sets SERVER, USER_ID, SERVER_PID, DEVICE_PID.
start_stack() {
	local name=$1 port out code
	shift
	STACK=$name
	port=$(free_port)
	SERVER="http://127.0.0.1:$port"
	export KEYHOLDER_SERVER=$SERVER
	export KEYHOLDER_HOME="$WORK/$name/party" KEYHOLDER_DEVICE_HOME="$WORK/$name/phone"
	mkdir -p "$WORK/$name"
	KEYHOLDER_CPUPROFILE=${BENCH_PROFILE:+$BENCH_PROFILE/keyholderd.$name.pprof} keyholderd serve --listen "127.0.0.1:$port" --data-dir "$WORK/$name/data" --upload-rate 0 --access-rate 0 \
		--log-level warn "$@" >"$WORK/$name/server.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=($!)
	for _ in $(seq 1 200); do curl -fsS "$SERVER/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
	curl -fsS "$SERVER/healthz" >/dev/null || { cat "$WORK/$name/server.log" >&2; die "keyholderd did not start"; }
	out=$(keyholderd admin user create "bench-$name" --no-qr)
	USER_ID=$(echo "$out" | awk '/^user:/ {print $2}')
	code=$(echo "$out" | awk '/^enrollment code:/ {print $3}')
	device-sim enroll --server "$SERVER" --code "$code" --passphrase-file "$WORK/pass" >/dev/null
	KEYHOLDER_CPUPROFILE=${BENCH_PROFILE:+$BENCH_PROFILE/device-sim.$name.pprof} device-sim run --auto-approve --workers "$DEVICE_WORKERS" --passphrase-file "$WORK/pass" --log "$WORK/$name/phone.log" >/dev/null 2>&1 &
	DEVICE_PID=$!
	PIDS+=($!)
	for _ in $(seq 1 200); do grep -q 'connected to the push channel' "$WORK/$name/phone.log" 2>/dev/null && break; sleep 0.05; done
	keyholder keygen --name "bench party $name" --no-passphrase >/dev/null 2>&1
	keyholder register >/dev/null
}

# cpu_ms PID...: the CPU time (user + system, ms) the processes have used.
cpu_ms() {
	local tck total=0 p f
	tck=$(getconf CLK_TCK)
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		# Fields 14 and 15 (utime, stime), counted after the command name.
		f=$(sed -E 's/^.*\) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		total=$((total + f))
	done
	echo $((total * 1000 / tck))
}

# rt_case PARTIES RECORDS: one roundtrip run, then the CPU each process
# spent per approval (keyholderd, device-sim, the parties, PostgreSQL's
# processes), both next to the floor (FLOOR_MS, measure_floor), and the
# load average.
rt_case() {
	local n=$2 k0 d0 p0 k1 d1 p1 r rate
	k0=$(cpu_ms "$SERVER_PID"); d0=$(cpu_ms "$DEVICE_PID"); p0=$(pg_cpu_ms)
	KEYHOLDER_CPUPROFILE=${BENCH_PROFILE:+$BENCH_PROFILE/parties.$STACK.$1.pprof} /usr/bin/time -f '%U %S' -o "$WORK/rt-time" roundtrip --server "$SERVER" --user "$USER_ID" --parties "$1" --records "$n" \
		--size "$RECORD_SIZE" --poll "$POLL" | tee "$WORK/rt-out"
	k1=$(cpu_ms "$SERVER_PID"); d1=$(cpu_ms "$DEVICE_PID"); p1=$(pg_cpu_ms)
	r=$(awk '{printf "%d", ($1 + $2) * 1000}' "$WORK/rt-time")
	rate=$(grep -o '[0-9.]* approvals/s' "$WORK/rt-out" | awk '{print $1}' || true)
	[ -n "$rate" ] || die "roundtrip printed no approvals/s"
	awk -v k=$((k1 - k0)) -v d=$((d1 - d0)) -v p=$((p1 - p0)) -v r="$r" -v n="$n" -v f="$FLOOR_MS" -v rate="$rate" -v cores="$(nproc)" 'BEGIN {
		all = (k + d + r + p) / n
		printf "CPU per approval: keyholderd %.2f ms, device-sim %.2f ms, parties %.2f ms, postgres %.2f ms, all %.2f ms\n",
			k / n, d / n, r / n, p / n, all
		printf "against the floor (%.2f ms, %.0f/s on %d cores): CPU %.1fx the floor, %s approvals/s = %.0f%% of the floor'"'"'s\n",
			f, cores * 1000 / f, cores, all / f, rate, 100 * rate * f / (cores * 1000) }'
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# pg_cpu_ms: the CPU the postgres processes have used, on the PostgreSQL
# stack only (other load on a local cluster is no part of a SQLite run).
pg_cpu_ms() {
	if [ "$STACK" = pg ]; then cpu_ms $(pgrep -u postgres 2>/dev/null); else echo 0; fi
}

# measure_floor DB: the floor of an approval on this machine now (bench/floor
# on the same database kind: a postgres:// DSN or a directory for SQLite);
# sets FLOOR_MS.
measure_floor() {
	local out
	out=$(floor -db "$1") || die "floor failed"
	echo "$out" | grep -v '^floor_'
	FLOOR_MS=$(echo "$out" | sed -n 's/^floor_approval_ms=\([0-9.]*\).*/\1/p')
	[ -n "$FLOOR_MS" ] || die "floor printed no floor_approval_ms"
}

rt_cases() {
	echo "one party, one record at a time (latency without queueing):"
	rt_case 1 $((RECORDS / 10))
	echo "$PARTIES concurrent parties:"
	rt_case "$PARTIES" "$RECORDS"
}

section_roundtrip() {
	echo "## Approval round trip: $RECORD_SIZE B records to one user, whose device-sim answers $DEVICE_WORKERS at a time ($(nproc) cores)"
	echo
	start_stack sqlite
	echo "### SQLite"
	measure_floor "$WORK/sqlite"
	rt_cases
	echo
	if command -v psql >/dev/null && psql "$BENCH_PG_DSN" -qtc 'select 1' >/dev/null 2>&1; then
		PGDB="kh_bench_$$"
		psql "$BENCH_PG_DSN" -qc "CREATE DATABASE $PGDB" >/dev/null
		local dsn
		dsn=$(echo "$BENCH_PG_DSN" | sed -E "s#(postgres(ql)?://[^/]+)/[^?]*#\1/$PGDB#")
		start_stack pg --db "$dsn"
		echo "### PostgreSQL"
		measure_floor "$dsn"
		rt_cases
	else
		echo "### PostgreSQL: skipped (no server at BENCH_PG_DSN)"
	fi
	echo
}

# timed NAME CMD...: run CMD under /usr/bin/time; sets NAME_S and NAME_RSS (KiB).
# The best wall time of BENCH_RUNS runs counts (other load only slows a
# run down); RSS is the largest seen.
timed() {
	local var=$1 t0 t1 best="" rss=0 r i
	shift
	for ((i = 0; i < BENCH_RUNS; i++)); do
		t0=$(date +%s%N)
		/usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || { cat "$WORK/err.txt" >&2; die "failed: $*"; }
		t1=$(date +%s%N)
		r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
		[ "$r" -gt "$rss" ] && rss=$r
		if [ -z "$best" ] || [ $((t1 - t0)) -lt "$best" ]; then best=$((t1 - t0)); fi
	done
	printf -v "${var}_S" '%s' "$(awk -v n="$best" 'BEGIN { printf "%.2f", n / 1e9 }')"
	printf -v "${var}_RSS" '%s' "$rss"
}

row() { # label seconds rss_kib
	awk -v l="$1" -v s="$2" -v r="$3" -v mib="$BIG_MIB" 'BEGIN { printf "| %-44s | %7.2f s | %6.0f MiB/s | %7.1f MiB |\n", l, s, mib / s, r / 1024 }'
}

section_bigfile() {
	command -v gpg >/dev/null || die "gpg is required"
	[ -x /usr/bin/time ] || die "/usr/bin/time is required"
	echo "## keyholder seal/open vs gpg, ${BIG_MIB} MiB, in $(dirname "$WORK")"
	echo
	start_stack big
	head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/big.bin"
	local rec
	timed smod keyholder seal "$WORK/big.bin" --to "$USER_ID" --profile modern
	rec=$(cat "$WORK/out.txt")
	keyholder wait "$rec" --timeout 10m >/dev/null
	keyholder request "$rec" --purpose bench --wait --timeout 10m >/dev/null 2>&1
	timed omod keyholder open "$rec" -o "$WORK/opened.bin"
	cmp "$WORK/big.bin" "$WORK/opened.bin" || die "opened file differs"
	rm -f "$WORK/opened.bin"
	timed seal keyholder seal "$WORK/big.bin" --to "$USER_ID"
	rec=$(cat "$WORK/out.txt")
	keyholder wait "$rec" --timeout 10m >/dev/null
	keyholder request "$rec" --purpose bench --wait --timeout 10m >/dev/null 2>&1
	timed open keyholder open "$rec" -o "$WORK/opened.bin"
	cmp "$WORK/big.bin" "$WORK/opened.bin" || die "opened file differs"
	rm -f "$WORK/opened.bin"
	keyholder fetch "$rec" -o "$WORK/record.pgp" 2>/dev/null

	export GNUPGHOME="$WORK/gnupg"
	mkdir -m 700 "$GNUPGHOME"
	gpg --batch --quiet --import "$KEYHOLDER_HOME/party.key" 2>/dev/null
	local fpr
	fpr=$(keyholder pubkey | gpg --batch --with-colons --import-options show-only --import 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
	timed genc gpg --batch --yes --trust-model always --compress-algo none --cipher-algo AES256 -r "$fpr" -o "$WORK/gpg.pgp" --encrypt "$WORK/big.bin"
	timed gdec gpg --batch --yes -o "$WORK/gpg.out" --decrypt "$WORK/gpg.pgp"
	rm -f "$WORK/gpg.out"
	timed gdec2 gpg --batch --yes -o "$WORK/gpg.out" --decrypt "$WORK/record.pgp"
	cmp "$WORK/big.bin" "$WORK/gpg.out" || die "gpg's output differs"

	echo "| command                                      |    wall   |   throughput | peak RSS    |"
	echo "|----------------------------------------------|-----------|--------------|-------------|"
	row "keyholder seal, compat (encrypt+upload+sign)" "$seal_S" "$seal_RSS"
	row "keyholder seal, modern (SEIPDv2 AES-GCM)" "$smod_S" "$smod_RSS"
	row "gpg --encrypt (file to file)" "$genc_S" "$genc_RSS"
	row "keyholder open, compat (download+verify+dec)" "$open_S" "$open_RSS"
	row "keyholder open, modern" "$omod_S" "$omod_RSS"
	row "gpg --decrypt (its own file)" "$gdec_S" "$gdec_RSS"
	row "gpg --decrypt (the record keyholder fetched)" "$gdec2_S" "$gdec2_RSS"
	echo
	awk -v a="$genc_S" -v b="$seal_S" -v c="$gdec_S" -v d="$open_S" -v e="$smod_S" -v f="$omod_S" 'BEGIN { printf "speed vs gpg (higher is faster): seal compat %.2fx, modern %.2fx; open compat %.2fx, modern %.2fx\n", a / b, a / e, c / d, c / f }'
	echo "(keyholder's figures include the HTTP transfer to/from keyholderd on the same 2-core machine, which hashes and stores the ciphertext at the same time.)"
	echo
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(roundtrip bigfile)
for s in "${sections[@]}"; do
	declare -f "section_$s" >/dev/null || die "unknown section $s (roundtrip, bigfile)"
	"section_$s"
done
