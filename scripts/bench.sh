#!/usr/bin/env bash
# Keyholder benchmarks, in sections. `make bench` runs them all; name
# sections to run only those:
#
#   scripts/bench.sh                 # every section
#   scripts/bench.sh envelope        # one section
#   scripts/bench.sh --list          # the sections
#
# Each section prints its own figures next to baselines measured in the
# same run, on the same input. Timings are wall-clock, best of BENCH_RUNS
# runs (other load on the machine only ever makes a run slower); the
# section prints the load average first so that a noisy run is visible.
#
# Adding a section: write a function section_NAME and add NAME to SECTIONS.
#
# Settings (environment):
#   BENCH_SIZE_MIB   size of the large test file (default 512)
#   BENCH_SMALL_MIB  size of the small file for the flat-memory check (64)
#   BENCH_RUNS       runs per timed command; the fastest counts (3)
#   BENCH_TIME       -benchtime of the Go micro-benchmarks (1s)
#   BENCH_DIR        where to put the test files (default: a tmpfs if one
#                    has room, else $TMPDIR or /tmp)
#   BENCH_GRANTS     grants per run of the grants section (3000)
#   BENCH_PER_RECORD records of the grants section's CPU-per-record run (1000)
#   BENCH_S3_SIZES   record sizes of the s3 section (64M 1G)
#   BENCH_LOG_LEAVES leaves of the log section's first tree; the second
#                    is ten times more (default 100000)
#   BENCH_HISTORY    history sizes of the history section (100,100000)
#   BENCH_PG_DSN     PostgreSQL for the grants and history sections (default
#                    $KEYHOLDER_TEST_POSTGRES, else the local cluster's
#                    test database; skipped when unreachable)
set -euo pipefail
cd "$(dirname "$0")/.."

SECTIONS=(envelope server s3 cli grants history log)

BENCH_SIZE_MIB=${BENCH_SIZE_MIB:-512}
BENCH_SMALL_MIB=${BENCH_SMALL_MIB:-64}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_TIME=${BENCH_TIME:-1s}

# ---------------------------------------------------------------- helpers

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

# need_cmd CMD PACKAGE: make sure CMD exists, installing PACKAGE with apt
# when running as root (as .ci/run does), or fail with a clear message.
APT_UPDATED=""
need_cmd() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "bench: $cmd is missing; installing the $pkg package"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq "$pkg" >/dev/null 2>&1 || {
			[ -n "$APT_UPDATED" ] || { apt-get update -qq >/dev/null && APT_UPDATED=1; }
			apt-get install -y -qq "$pkg" >/dev/null
		}
		command -v "$cmd" >/dev/null 2>&1 && return 0
	fi
	die "$cmd is required (package $pkg)"
}

# pick_dir MIB: a directory with room for MIB MiB, preferring tmpfs so that
# the disk does not take part in the measurement.
pick_dir() {
	local need_kib=$(($1 * 1024)) d
	if [ -n "${BENCH_DIR:-}" ]; then
		echo "$BENCH_DIR"
		return
	fi
	for d in /dev/shm /run/user/$(id -u) "${TMPDIR:-/tmp}" /tmp; do
		[ -d "$d" ] && [ -w "$d" ] || continue
		if [ "$(df -Pk "$d" | awk 'NR==2 {print $4}')" -gt "$need_kib" ]; then
			echo "$d"
			return
		fi
	done
	echo "${TMPDIR:-/tmp}"
}

now_ns() { date +%s%N; }

# measure OUTVAR CMD...: runs CMD BENCH_RUNS times under /usr/bin/time -v;
# sets OUTVAR_S to the best wall time in seconds, OUTVAR_CPU to the least
# CPU time (user + system) of a run in seconds, and OUTVAR_RSS to the
# largest peak RSS in KiB. Standard output is discarded; a failure stops
# the script with the command's standard error.
measure() {
	local var=$1 best="" cpu="" rss=0 i t0 t1 r c
	shift
	for ((i = 0; i < BENCH_RUNS; i++)); do
		t0=$(now_ns)
		if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt"; then
			cat "$WORK/stderr.txt" >&2
			die "failed: $*"
		fi
		t1=$(now_ns)
		r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
		[ "$r" -gt "$rss" ] && rss=$r
		c=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.4f", s}' "$WORK/time.txt")
		if [ -z "$cpu" ] || awk -v a="$c" -v b="$cpu" 'BEGIN { exit !(a < b) }'; then cpu=$c; fi
		if [ -z "$best" ] || [ $((t1 - t0)) -lt "$best" ]; then best=$((t1 - t0)); fi
	done
	printf -v "${var}_S" '%s' "$(awk -v n="$best" 'BEGIN { printf "%.4f", n / 1e9 }')"
	printf -v "${var}_RSS" '%s' "$rss"
	printf -v "${var}_CPU" '%s' "$cpu"
}

mibps() { awk -v mib="$1" -v s="$2" 'BEGIN { printf "%.0f", mib / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------- envelope

# Seal and open throughput of pkg/envelope per profile on a BENCH_SIZE_MIB
# file, against gpg --encrypt/--decrypt (Cv25519 key, no compression) and
# openssl/sha256sum hashing the same file; peak RSS at two file sizes; then
# rewrap and statement signature latency per key type.
section_envelope() {
	need_cmd go golang
	need_cmd gpg gnupg
	need_cmd openssl openssl
	need_cmd sha256sum coreutils
	[ -x /usr/bin/time ] || need_cmd /usr/bin/time time

	local big=$BENCH_SIZE_MIB small=$BENCH_SMALL_MIB
	local base
	# The big file, gpg's and our two sealed copies, and the small set.
	base=$(pick_dir $((4 * big + 4 * small + 64)))
	WORK=$(mktemp -d "$base/keyholder-bench.XXXXXX")
	export GNUPGHOME="$WORK/gnupg"
	trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

	echo "== envelope: ${big} MiB file in $base, best of $BENCH_RUNS runs, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "   $(go version | cut -d' ' -f3-), $(gpg --version | head -1), $(openssl version | cut -d' ' -f1-2)"

	go build -o "$WORK/envelope" ./bench/envelope
	local tool=$WORK/envelope
	"$tool" keygen "$WORK/key"

	openssl rand -out "$WORK/big" $((big << 20))
	openssl rand -out "$WORK/small" $((small << 20))

	# A gpg key like Keyholder's: Ed25519 primary, Cv25519 encryption subkey.
	mkdir -m 700 "$GNUPGHOME"
	gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
		--quick-gen-key 'keyholder bench <bench@keyholder.invalid>' ed25519 sign never 2>/dev/null
	local fpr
	fpr=$(gpg --batch --with-colons --list-keys bench@keyholder.invalid 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
	gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
	local gpg_enc=(gpg --batch --yes --quiet --trust-model always --compress-algo none -r "$fpr")
	local gpg_dec=(gpg --batch --yes --quiet)

	# Sealed copies to open (untimed), then the timed runs, all on the big
	# file, which stays in the page cache.
	"${gpg_enc[@]}" -o "$WORK/big.gpg" --encrypt "$WORK/big" 2>/dev/null
	local p
	for p in compat modern; do
		"$tool" seal -profile "$p" -key "$WORK/key" -o "$WORK/big.$p" "$WORK/big"
		"$tool" seal -profile "$p" -key "$WORK/key" -o "$WORK/small.$p" "$WORK/small"
	done

	measure OSSL openssl dgst -sha256 "$WORK/big"
	measure SHASUM sha256sum "$WORK/big"
	measure GPGENC "${gpg_enc[@]}" -o /dev/null --encrypt "$WORK/big"
	measure GPGDEC "${gpg_dec[@]}" -o /dev/null --decrypt "$WORK/big.gpg"
	for p in compat modern; do
		measure "SEAL_$p" "$tool" seal -profile "$p" -key "$WORK/key" -o /dev/null "$WORK/big"
		measure "OPEN_$p" "$tool" open -key "$WORK/key" -o /dev/null "$WORK/big.$p"
	done

	local ossl=$OSSL_S
	echo
	printf '%-28s %8s %8s %11s %8s %8s %9s\n' "${big} MiB, output /dev/null" "MiB/s" "vs gpg" "vs openssl" "CPU s" "CPU/gpg" "peak RSS"
	row() { # name seconds rss gpg_seconds cpu_seconds gpg_cpu_seconds
		local vs_gpg="-" cpu_gpg="-"
		[ -n "$4" ] && vs_gpg=$(ratio "$4" "$2")
		[ -n "$6" ] && cpu_gpg=$(ratio "$5" "$6")
		printf '%-28s %8s %8s %11s %8s %8s %7s Mi\n' "$1" "$(mibps "$big" "$2")" "$vs_gpg" "$(ratio "$ossl" "$2")" "$5" "$cpu_gpg" "$(kib2mib "$3")"
	}
	row "openssl dgst -sha256" "$OSSL_S" "$OSSL_RSS" "" "$OSSL_CPU" ""
	row "sha256sum" "$SHASUM_S" "$SHASUM_RSS" "" "$SHASUM_CPU" ""
	row "gpg --encrypt" "$GPGENC_S" "$GPGENC_RSS" "$GPGENC_S" "$GPGENC_CPU" "$GPGENC_CPU"
	row "gpg --decrypt" "$GPGDEC_S" "$GPGDEC_RSS" "$GPGDEC_S" "$GPGDEC_CPU" "$GPGDEC_CPU"
	for p in compat modern; do
		local s r o ro sc oc
		s=SEAL_${p}_S r=SEAL_${p}_RSS o=OPEN_${p}_S ro=OPEN_${p}_RSS sc=SEAL_${p}_CPU oc=OPEN_${p}_CPU
		row "envelope seal $p" "${!s}" "${!r}" "$GPGENC_S" "${!sc}" "$GPGENC_CPU"
		row "envelope open $p" "${!o}" "${!ro}" "$GPGDEC_S" "${!oc}" "$GPGDEC_CPU"
	done
	echo "(vs gpg: gpg's wall time over ours, >1 is faster than gpg; vs openssl: the same against"
	echo " openssl dgst -sha256 of the file, one SHA-256 pass; CPU s: user + system CPU time of the"
	echo " least costly run; CPU/gpg: our CPU time over gpg's, <1 costs less CPU than gpg)"

	# Peak RSS must not grow with the record: the small file, one run each.
	echo
	printf '%-28s %10s %10s\n' "peak RSS" "${small} MiB" "${big} MiB"
	local saved_runs=$BENCH_RUNS
	BENCH_RUNS=1
	for p in compat modern; do
		measure SSEAL "$tool" seal -profile "$p" -key "$WORK/key" -o /dev/null "$WORK/small"
		measure SOPEN "$tool" open -key "$WORK/key" -o /dev/null "$WORK/small.$p"
		local r ro
		r=SEAL_${p}_RSS ro=OPEN_${p}_RSS
		printf '%-28s %8s Mi %8s Mi\n' "envelope seal $p" "$(kib2mib "$SSEAL_RSS")" "$(kib2mib "${!r}")"
		printf '%-28s %8s Mi %8s Mi\n' "envelope open $p" "$(kib2mib "$SOPEN_RSS")" "$(kib2mib "${!ro}")"
	done
	BENCH_RUNS=$saved_runs

	# Latency per key type (Go benchmarks; Sign and Verify live in
	# sign_test.go, Rewrap in bench_test.go).
	echo
	printf '%-40s %12s\n' "go test -bench (benchtime $BENCH_TIME)" "µs/op"
	go test -run '^$' -bench 'Rewrap|Sign|Verify' -benchtime "$BENCH_TIME" ./pkg/envelope/ >"$WORK/gobench.txt" 2>&1 || {
		cat "$WORK/gobench.txt" >&2
		die "go test -bench failed"
	}
	awk '/^Benchmark/ {
		name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") printf "%-40s %12.1f\n", name, $i / 1000
	}' "$WORK/gobench.txt"

	gpgconf --kill gpg-agent >/dev/null 2>&1 || true
	rm -rf "$WORK"
	trap - EXIT
}

# ---------------------------------------------------------------- server and cli

# Upload of a large record to keyholderd over loopback, against openssl and
# sha256sum on the same file (scripts/bench-server.sh).
section_server() {
	log ""
	log "== server: upload ingest over loopback (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
	bash scripts/bench-server.sh
}

# Upload and download through keyholderd to an S3 server (versitygw)
# against the S3 client library alone, RSS at two sizes, small records S3
# vs filesystem (scripts/bench-s3.sh; BENCH_S3_SIZES, default 64M 1G).
section_s3() {
	log ""
	log "== s3: keyholderd with ciphertexts in S3 (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
	# shellcheck disable=SC2086
	bash scripts/bench-s3.sh ${BENCH_S3_SIZES:-64M 1G}
}

# Approval round trip, grants per second, keyholder seal/open against gpg
# (scripts/bench-cli.sh).
section_cli() {
	log ""
	log "== cli: approval round trip, grants/s, seal/open vs gpg (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
	if [ -f scripts/bench-cli.sh ]; then
		bash scripts/bench-cli.sh
	else
		log "scripts/bench-cli.sh is missing"
		return 1
	fi
}

# ---------------------------------------------------------------- grants

# Grants per second (bench/grants): the real server in this one process on
# a loopback port, on PostgreSQL (a fresh schema, dropped after; skipped
# when unreachable) and on SQLite; one user with one device, 16 parties,
# 200 approved records. End to end: 32 parties ask for access at once and
# the device (pkg/client) answers with 16 workers: fetch, CheckRequest,
# Rewrap, sign, POST the grant. Server only: the same calls with the
# device's cryptography precomputed, timed one kind at a time. Best of 2
# runs each, with the load average before every run and the CPU time per
# grant of this process and of PostgreSQL. Then keyholderd's CPU per record
# (upload, approval, access request, grant; BENCH_PER_RECORD records) in a
# server process of its own, next to the cryptography's own cost, without
# and with the transparency log's sequencer.
section_grants() {
	need_cmd go golang
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/keyholder-bench-grants.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
	echo
	echo "== grants: grants per second, end to end and server only (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	go build -o "$dir/grants" ./bench/grants
	local dsn=()
	[ -n "${BENCH_PG_DSN:-}" ] && dsn=(-dsn "$BENCH_PG_DSN")
	"$dir/grants" -grants "${BENCH_GRANTS:-3000}" -runs 2 -dir "$dir" -job all -per-record "${BENCH_PER_RECORD:-1000}" "${dsn[@]}"
	rm -rf "$dir"
	trap - EXIT
}

# ---------------------------------------------------------------- history

# No request whose cost grows with history (bench/history): the device's
# open requests and event stream replay, a page of every list, and an
# approval, at 100 and at 100,000 records (BENCH_HISTORY) and as many
# pending records of other users written after the statistics were taken,
# side by side, with the query the open-request list used before as the
# baseline; on SQLite and, when reachable, PostgreSQL.
section_history() {
	need_cmd go golang
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/keyholder-bench-history.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
	echo
	echo "== history: latency at a small and a large history (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	go build -o "$dir/history" ./bench/history
	local dsn=()
	[ -n "${BENCH_PG_DSN:-}" ] && dsn=(-dsn "$BENCH_PG_DSN")
	"$dir/history" -sizes "${BENCH_HISTORY:-100,100000}" -dir "$dir" "${dsn[@]}"
	rm -rf "$dir"
	trap - EXIT
}

# ---------------------------------------------------------------- log

# The transparency log's proofs at two tree sizes (bench/translog): serve
# and verify times of inclusion, consistency and user history proofs, the
# bytes of a device's own check, against a primary-key SELECT.
section_log() {
	log ""
	log "== log: proofs at ${BENCH_LOG_LEAVES:-100000} and ten times more leaves (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
	go run ./bench/translog -n "${BENCH_LOG_LEAVES:-100000}" -sizes 2
}

# ---------------------------------------------------------------- main

run=()
for arg in "$@"; do
	case $arg in
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	--list)
		printf '%s\n' "${SECTIONS[@]}"
		exit 0
		;;
	*)
		found=""
		for s in "${SECTIONS[@]}"; do [ "$s" = "$arg" ] && found=1; done
		[ -n "$found" ] || die "unknown section $arg (sections: ${SECTIONS[*]})"
		run+=("$arg")
		;;
	esac
done
[ ${#run[@]} -gt 0 ] || run=("${SECTIONS[@]}")
for s in "${run[@]}"; do
	"section_$s"
done
