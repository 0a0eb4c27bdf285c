#!/usr/bin/env bash
# make demo: the whole Keyholder flow on one machine, narrated.
# Starts keyholderd on embedded defaults in a temporary directory, enrolls a
# simulated phone (device-sim --auto-approve), registers a third party, adds
# a second phone approved by the first (the user's key chain),
# seals a file of a few MiB to the user's device, waits for the approval,
# asks for access, opens the record, compares the bytes, verifies the
# signatures, and decrypts the fetched message with GnuPG too. Every client
# checks the transparency log, cosigned by a real witness (litewitness)
# when it is installed, and an auditor's monitor follows it at the end.
# Exits 0 only if every step succeeded.
#
# PORT=N (make demo PORT=N) serves on 127.0.0.1:N instead of a free port
# picked at random; a port in use is an error.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyholder-demo.XXXXXX")
SERVER_PID=""
DEVICE_PID=""
WITNESS_PID=""
AGENT_PID=""
cleanup() {
	[ -n "$DEVICE_PID" ] && kill "$DEVICE_PID" 2>/dev/null || true
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
	[ -n "$WITNESS_PID" ] && kill "$WITNESS_PID" 2>/dev/null || true
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "(kept $WORK)"; fi
}
trap cleanup EXIT

bold=""; dim=""; reset=""
if [ -t 1 ]; then bold=$'\e[1m'; dim=$'\e[2m'; reset=$'\e[0m'; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
say() { printf '    %s\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; if [ -f "$WORK/server.log" ]; then echo "--- server log (tail)" >&2; tail -20 "$WORK/server.log" >&2; fi; exit 1; }
run() {
	local a shown=""
	for a in "$@"; do
		if [[ "$a" =~ [[:space:]] ]]; then shown+=" '$a'"; else shown+=" $a"; fi
	done
	printf '    %s$%s%s\n' "$dim" "$shown" "$reset" >&2
	"$@"
}

# The port: PORT if given (it must be free), else a free one. Checked
# before the build, so a busy port fails at once.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${PORT:-}" ]; then
	[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || fail "PORT=$PORT is not a port number"
	port_free "$PORT" || fail "port $PORT is in use (choose another: make demo PORT=N)"
else
	PORT=""
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if port_free "$p"; then PORT=$p; break; fi
	done
	[ -n "$PORT" ] || fail "no free port"
fi

step "Building keyholderd, keyholder and device-sim"
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/" ./cmd/keyholderd ./cmd/keyholder ./cmd/device-sim || fail "build"
export PATH="$WORK/bin:$PATH"
say "binaries in $WORK/bin"
export KEYHOLDER_SERVER="http://127.0.0.1:$PORT"
export KEYHOLDER_ADMIN_TOKEN
KEYHOLDER_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export KEYHOLDER_HOME="$WORK/party"            # the third party's key
export KEYHOLDER_DEVICE_HOME="$WORK/phone"     # the user's phone (simulated)
DATA="$WORK/server-data"

# A witness for the transparency log: litewitness (filippo.io/torchwood
# v0.6.1, which .ci/run installs), if it is here with ssh-agent and sqlite3.
LITEWITNESS=${KEYHOLDER_TEST_LITEWITNESS:-$(command -v litewitness || true)}
[ -z "$LITEWITNESS" ] && [ -x "$HOME/.cache/keyholder/bin/litewitness" ] && LITEWITNESS="$HOME/.cache/keyholder/bin/litewitness"
WITNESS_FLAGS=()
CLIENT_WITNESS=()
LOG_KEY=$(keyholderd log-key --data-dir "$DATA") || fail "log-key"
if [ -n "$LITEWITNESS" ] && command -v ssh-agent >/dev/null && command -v sqlite3 >/dev/null; then
	step "0. A witness (litewitness) starts: it will cosign every checkpoint of the log that extends the last one it saw"
	W="$WORK/witness"; mkdir -p "$W"
	WNAME="demo.witness/w1"
	ssh-keygen -q -t ed25519 -N '' -f "$W/key" || fail "witness key"
	eval "$(ssh-agent -s -a "$W/agent.sock")" >/dev/null || fail "ssh-agent"
	AGENT_PID=$SSH_AGENT_PID
	SSH_AUTH_SOCK="$W/agent.sock" ssh-add -q "$W/key" 2>/dev/null || fail "ssh-add"
	WPORT=""
	for _ in $(seq 1 50); do p=$((20000 + RANDOM % 20000)); if [ "$p" != "$PORT" ] && port_free "$p"; then WPORT=$p; break; fi; done
	[ -n "$WPORT" ] || fail "no free port for the witness"
	"$LITEWITNESS" -name "$WNAME" -db "$W/witness.db" -ssh-agent "$W/agent.sock" \
		-key "$(ssh-keygen -lf "$W/key.pub" | awk '{print $2}')" -listen "127.0.0.1:$WPORT" >"$W/witness.log" 2>&1 &
	WITNESS_PID=$!
	for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$WPORT/" && break; sleep 0.1; done
	curl -s -o /dev/null "http://127.0.0.1:$WPORT/" || { cat "$W/witness.log"; fail "litewitness did not come up"; }
	# What witnessctl add-log and add-key do: the log's origin, its empty
	# tree, and its verifier key.
	sqlite3 "$W/witness.db" \
		"INSERT INTO log (origin, tree_size, tree_hash) VALUES ('keyholder.local/log', 0, '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');" \
		"INSERT INTO key (origin, key) VALUES ('keyholder.local/log', '$LOG_KEY');" || fail "adding the log to the witness"
	# The witness's cosignature/v1 verifier key: name+hash+base64(0x04 || Ed25519 key).
	awk '{print $2}' "$W/key.pub" | base64 -d | tail -c 32 >"$W/pub.bin"
	WHASH=$({ printf '%s\n\x04' "$WNAME"; cat "$W/pub.bin"; } | sha256sum | cut -c1-8)
	WVKEY="$WNAME+$WHASH+$({ printf '\x04'; cat "$W/pub.bin"; } | base64 -w0)"
	WITNESS_FLAGS=(--log-witness "http://127.0.0.1:$WPORT=$WVKEY" --log-witness-quorum 1)
	CLIENT_WITNESS=(--witness "$WVKEY" --quorum 1)
	say "litewitness on 127.0.0.1:$WPORT, key $WVKEY"
else
	say "(no litewitness, ssh-agent or sqlite3 here: the log runs without a witness; .ci/run installs litewitness)"
fi

step "1. The operator starts keyholderd (SQLite and blobs in $DATA)"
keyholderd serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" "${WITNESS_FLAGS[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
	curl -fsS "$KEYHOLDER_SERVER/healthz" >/dev/null 2>&1 && break
	kill -0 "$SERVER_PID" 2>/dev/null || fail "keyholderd exited"
	sleep 0.1
done
curl -fsS "$KEYHOLDER_SERVER/healthz" >/dev/null || fail "keyholderd did not come up"
say "listening on $KEYHOLDER_SERVER"
run keyholderd log-key --data-dir "$DATA" >/dev/null || fail "log-key"
say "Its transparency log's verifier key (every client is configured with it): $LOG_KEY"

step "2. The operator creates user alice and a one-time enrollment code"
out=$(run keyholderd admin user create alice --no-qr) || fail "create user"
echo "$out" | sed 's/^/    /'
USER_ID=$(echo "$out" | awk '/^user:/ {print $2}')
CODE=$(echo "$out" | awk '/^enrollment code:/ {print $3}')
[ -n "$USER_ID" ] && [ -n "$CODE" ] || fail "could not read the user id and code"

step "3. Alice's phone generates its key and enrolls with the code"
printf 'demo passphrase\n' >"$WORK/phone.pass"
run device-sim log --key "$LOG_KEY" "${CLIENT_WITNESS[@]}" | sed 's/^/    /' || fail "device-sim log"
run device-sim enroll --server "$KEYHOLDER_SERVER" --code "$CODE" --passphrase-file "$WORK/phone.pass" | sed 's/^/    /' || fail "enroll"
say "The private key stays on the phone, encrypted with Argon2 (mode $(stat -c %a "$KEYHOLDER_DEVICE_HOME/device.key")); the server got the public key only."
device-sim run --auto-approve --passphrase-file "$WORK/phone.pass" --log "$WORK/phone.log" >/dev/null 2>&1 &
DEVICE_PID=$!
for _ in $(seq 1 100); do grep -q 'connected to the push channel' "$WORK/phone.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'connected to the push channel' "$WORK/phone.log" || fail "device-sim did not connect"
say "The phone holds a server-sent-events channel open and approves automatically (--auto-approve)."

step "4. A third party, Acme Lab, makes its key and is registered by the operator"
run keyholder keygen --name "Acme Lab" --no-passphrase >/dev/null 2>&1 || fail "keygen"
run keyholder log --key "$LOG_KEY" "${CLIENT_WITNESS[@]}" | sed 's/^/    /' || fail "keyholder log"
say "From now on Acme Lab checks every key chain, approval and grant it relies on against the public log."
run keyholder register | sed 's/^/    /' || fail "register"

step "5. Alice adds a second phone: the new phone shows a code, the first phone checks it and signs the new key in"
run device-sim log --home "$WORK/phone2" --key "$LOG_KEY" "${CLIENT_WITNESS[@]}" >/dev/null || fail "device-sim log (phone2)"
run device-sim link --home "$WORK/phone2" --server "$KEYHOLDER_SERVER" --user alice --passphrase-file "$WORK/phone.pass" --log "$WORK/phone2.log" >"$WORK/phone2.out" 2>&1 &
LINK_PID=$!
for _ in $(seq 1 100); do grep -q '^code: ' "$WORK/phone2.log" 2>/dev/null && break; sleep 0.1; done
LINK_CODE=$(awk '/^code: / {print $2}' "$WORK/phone2.log")
[ -n "$LINK_CODE" ] || fail "the new phone showed no code"
say "The new phone shows: $LINK_CODE"
run device-sim approve-device "$LINK_CODE" --passphrase-file "$WORK/phone.pass" | sed 's/^/    /' || fail "approve-device"
wait "$LINK_PID" || { cat "$WORK/phone2.out"; fail "the new phone was not added"; }
sed 's/^/    /' "$WORK/phone2.out"
say "The operator's enrollment code admits only a user's first phone; every later key is a link of alice's key chain,"
say "signed by a phone she already has. The server stores the chain but cannot extend it."
run keyholder keys "$USER_ID" | sed 's/^/    /' || fail "keys"
say "Acme Lab verified the chain link by link and pinned it: a chain later served that does not extend it is refused."

step "6. Acme Lab seals a 4 MiB file to alice's two phones and uploads it in one stream"
head -c $((4 << 20)) /dev/urandom >"$WORK/results.bin"
TITLE="Blood test, $(date +%B)"
REC=$(run keyholder seal "$WORK/results.bin" --to "$USER_ID" --title "$TITLE" --purpose "lab results" 2>"$WORK/seal.err") || { cat "$WORK/seal.err"; fail "seal"; }
sed 's/^/    /' "$WORK/seal.err"
say "record id: $REC"
say "The file was encrypted on Acme Lab's machine with a fresh session key wrapped to the phone's key;"
say "the title \"$TITLE\" travelled sealed to the phone too. Acme Lab signed the ciphertext's SHA-256."

step "7. The phone is notified, checks the request and signs the approval"
run keyholder wait "$REC" --timeout 60s | sed 's/^/    /' || fail "wait"
say "What the phone showed and checked:"
sed -n '/approval request/,/approved:/p' "$WORK/phone.log" | sed 's/^device-sim: /      /'

step "8. What the server saw, and what it never saw"
run keyholder status "$REC" | sed 's/^/    /'
if grep -rqa -- "$TITLE" "$DATA"; then fail "the title is readable in the server's data directory"; fi
say "The title \"$TITLE\" appears nowhere in the server's data directory (database and blobs)."
plainhash=$(sha256sum "$WORK/results.bin" | cut -c1-64)
if grep -rqa -- "$plainhash" "$DATA"; then fail "the plaintext hash is in the server's data"; fi
blob=$(find "$DATA/blobs" -type f -size +1M | head -1)
[ -n "$blob" ] || fail "no blob found"
if cmp -s "$blob" "$WORK/results.bin"; then fail "the server stored the plaintext"; fi
say "The server stores $(stat -c %s "$blob") bytes of ciphertext ($(basename "$blob" | cut -c1-16)…), the phone's signature and the"
say "submission; it never held the plaintext, the session key or a private key."

step "9. Acme Lab asks to read the record; the phone re-wraps the session key to Acme Lab's key"
run keyholder request "$REC" --purpose "second opinion" --expires 1h --wait --timeout 60s 2>&1 | sed 's/^/    /' || fail "request"
grep -q 'granted' "$WORK/phone.log" || fail "the phone did not log the grant"
say "The phone never downloaded the record: it decrypted its own key packet and encrypted the session key to Acme Lab."

step "10. Acme Lab opens the record: download, verify and decrypt in one stream"
run keyholder open "$REC" -o "$WORK/opened.bin" 2>&1 | sed 's/^/    /' || fail "open"
cmp "$WORK/results.bin" "$WORK/opened.bin" || fail "the opened file differs"
say "The opened file is byte for byte the original ($(stat -c %s "$WORK/opened.bin") bytes)."

step "11. Anyone can check the phone's signatures offline"
run keyholder verify "$REC" | sed 's/^/    /' || fail "verify"

step "12. The record is a standard OpenPGP message: GnuPG opens it too"
run keyholder fetch "$REC" -o "$WORK/record.pgp" 2>&1 | sed 's/^/    /' || fail "fetch"
if command -v gpg >/dev/null; then
	export GNUPGHOME="$WORK/gnupg"
	mkdir -m 700 "$GNUPGHOME"
	run gpg --batch --quiet --import "$KEYHOLDER_HOME/party.key" || fail "gpg --import"
	run gpg --batch --quiet --output "$WORK/gpg.bin" --decrypt "$WORK/record.pgp" || fail "gpg --decrypt"
	cmp "$WORK/results.bin" "$WORK/gpg.bin" || fail "gpg's output differs"
	say "gpg --decrypt gives back the same bytes."
else
	fail "gpg is not installed (apt-get install gnupg)"
fi

step "13. An auditor follows the transparency log"
run keyholder monitor --once --watch "$USER_ID" | sed 's/^/    /' || fail "monitor"
say "The monitor checked every checkpoint against the last one, recomputed the user map from every leaf,"
say "and listed alice's key chain as the log holds it: the same for every reader (docs/threat-model.md)."

step "Done: every step passed."
