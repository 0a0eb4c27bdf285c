# lib.sh: the steps of a Keyholder party that are the same whatever
# OpenPGP tool it uses, written with curl, jq and coreutils only. Each
# recipe (gpg.sh, sq.sh, sqop.sh, rnp.sh, openpgpjs.sh) defines the six
# tool operations, then sources this file, which runs the step named on
# its command line:
#
#   party_keygen NAME ALGO      make the party key; write its public key to party.asc
#   party_sign FILE             armored detached signature of type binary (0x00) to FILE.asc
#   party_verify CERT FILE SIG  exit 0 only if SIG is a good signature over FILE by the key in CERT
#   party_encrypt OUT CERT...   seal stdin to exactly CERT...: binary, uncompressed
#   party_decrypt IN OUT        open the message IN with the party key
#
# The steps (docs/parties.md walks through them):
#
#   keygen NAME ALGO       the key, its fingerprint in party.fpr
#   login                  a bearer token in token
#   chain USER PIN         verify USER's key chain from its pinned first
#                          device PIN; the keys to seal to in chain/recipients
#   seal USER FILE TITLE   seal FILE and its private metadata, upload; prints the record id
#   approval RECORD        wait for the device's decision on a record it
#                          submitted, verify the approval
#   request RECORD PURPOSE ask to read RECORD; if refused at once, prints
#                          the problem type and exits 3
#   open RECORD PURPOSE OUT  wait for the grant, verify it and the
#                          approval, download, check, decrypt to OUT
#   check CERT FPR FILE SIG  SIG is a good binary signature over FILE by
#                          the key in CERT, whose fingerprint is FPR
#
# Everything lands in the current directory. SERVER is the server's URL.
set -eu

die() { echo "${0##*/}: $*" >&2; exit 1; }
# problem FILE: fail with the problem (RFC 9457) the server answered.
problem() { die "$(jq -r '"\(.title): \(.detail) (\(.type | sub(".*/"; "")))"' "$1" 2> /dev/null || cat "$1")"; }
api() { curl -sS --fail-with-body -H "Authorization: Bearer $(cat token)" "$@"; }

# --- OpenPGP framing with coreutils ------------------------------------

# dearmor: ASCII armor on stdin to binary on stdout (RFC 9580 §6.2: skip
# the header lines up to the blank line, drop the checksum and END line;
# RNP ends armor lines with CRLF).
dearmor() { tr -d '\r' | sed -e '1,/^$/d' -e '/^=/d' -e '/^-----END /,$d' | base64 -d; }

# header FILE OFFSET: "TAG HEADER-LENGTH BODY-LENGTH" of the packet that
# starts at OFFSET (RFC 9580 §4.2), old or new format; a partial or
# indeterminate body length is -1.
header() {
	set -- $(od -An -tu1 -j "$2" -N6 "$1")
	[ $# -ge 2 ] && [ $(($1 & 0x80)) -ne 0 ] || die "no OpenPGP packet header there"
	if [ $(($1 & 0x40)) -ne 0 ]; then # new format: tag in 6 bits
		if [ "$2" -lt 192 ]; then echo $(($1 & 63)) 2 "$2"
		elif [ "$2" -lt 224 ]; then echo $(($1 & 63)) 3 $(((($2 - 192) << 8) + $3 + 192))
		elif [ "$2" -eq 255 ]; then echo $(($1 & 63)) 6 $((($3 << 24) | ($4 << 16) | ($5 << 8) | $6))
		else echo $(($1 & 63)) 2 -1; fi
	else # old format: tag in 4 bits, length type in 2
		case $(($1 & 3)) in
		0) echo $((($1 >> 2) & 15)) 2 "$2" ;;
		1) echo $((($1 >> 2) & 15)) 3 $((($2 << 8) | $3)) ;;
		2) echo $((($1 >> 2) & 15)) 5 $((($2 << 24) | ($3 << 16) | ($4 << 8) | $5)) ;;
		3) echo $((($1 >> 2) & 15)) 1 -1 ;;
		esac
	fi
}

# data_offset MSG: where the encrypted data packet starts. A record is
# key packets (tag 1, never of partial length) then one data packet
# (tag 18): skip the key packets. The data packet itself is never parsed,
# so its header (old or new format) and partial lengths do not matter.
data_offset() {
	off=0
	while :; do
		read -r tag hlen blen <<-EOF
		$(header "$1" $off)
		EOF
		[ "$tag" = 1 ] || break
		[ "$blen" -ge 0 ] || die "a key packet of partial length"
		off=$((off + hlen + blen))
	done
	[ "$tag" = 18 ] || die "packet $tag after the key packets, not an encrypted data packet (18)"
	echo $off
}

# fingerprint KEY.asc: the primary key's fingerprint, upper-case hex
# (RFC 9580 §5.5.4: v4 SHA-1 over 0x99, 2-octet length, the public key
# packet body; v6 SHA-256 over 0x9b, 4-octet length, body).
fingerprint() {
	dearmor < "$1" > "$1.bin"
	read -r tag hlen blen <<-EOF
	$(header "$1.bin" 0)
	EOF
	[ "$tag" = 6 ] || die "$1: not a public key"
	tail -c +$((hlen + 1)) "$1.bin" | head -c "$blen" > "$1.body"
	case $(od -An -tu1 -N1 "$1.body" | tr -d ' ') in
	4) { printf '\231'; be 2 "$blen"; cat "$1.body"; } | sha1sum ;;
	6) { printf '\233'; be 4 "$blen"; cat "$1.body"; } | sha256sum ;;
	*) die "$1: key version not 4 or 6" ;;
	esac | cut -d' ' -f1 | tr a-f A-F
}

# be N VALUE: VALUE as an N-octet big-endian integer.
be() {
	i=$(($1 - 1))
	while [ $i -ge 0 ]; do
		printf "\\$(printf %03o $((($2 >> (8 * i)) & 255)))"
		i=$((i - 1))
	done
}

# sigform SIG.asc: SIG is one signature packet (tag 2) of type 0x00
# (binary: not 0x01, text mode) with SHA-256, SHA-384 or SHA-512 (8, 9,
# 10). A tool's "good signature" does not check this (docs/protocol.md §4).
sigform() {
	dearmor < "$1" > "$1.bin"
	read -r tag hlen blen <<-EOF
	$(header "$1.bin" 0)
	EOF
	[ "$tag" = 2 ] && [ $((hlen + blen)) = "$(wc -c < "$1.bin")" ] || die "$1: not exactly one signature packet"
	set -- $(od -An -tu1 -j "$hlen" -N4 "$1.bin") # version, type, key algorithm, hash
	[ "$2" = 0 ] || die "signature type $2, not binary (0)"
	case $4 in 8 | 9 | 10) ;; *) die "signature hash algorithm $4, not SHA-256/384/512" ;; esac
}

# check CERT FPR FILE SIG: SIG is a good binary signature over FILE by the
# key in CERT, whose fingerprint is FPR.
check() {
	[ "$(fingerprint "$1")" = "$2" ] || die "$1 is not the key $2"
	sigform "$4"
	why=$(party_verify "$1" "$3" "$4" 2>&1) || die "$3: bad signature by $2: $why"
}

# step_check CERT FPR FILE SIG: check a statement's signature as the
# other steps do.
step_check() {
	check "$@"
	echo "good binary signature by $2"
}

# field NAME FILE: a statement field's value.
field() { sed -n "s/^$1: //p" "$2"; }

# metadata_sha256 PUBLIC [PRIVATE]: docs/protocol.md §4: SHA-256 of
# len(public) || public || len(private) || private, lengths 8 octets
# big-endian; no PRIVATE: empty.
metadata_sha256() {
	{
		be 8 "$(wc -c < "$1")"
		cat "$1"
		if [ $# -gt 1 ]; then be 8 "$(wc -c < "$2")"; cat "$2"; else be 8 0; fi
	} | sha256sum | cut -d' ' -f1
}

# --- The steps ---------------------------------------------------------

step_keygen() {
	party_keygen "$1" "$2"
	fingerprint party.asc > party.fpr
	echo "party key $(cat party.fpr)"
}

step_login() {
	FPR=$(cat party.fpr)
	NONCE=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
		-d "{\"fingerprint\":\"$FPR\"}" "$SERVER/v1/auth/challenge" | jq -r .nonce)
	# The challenge statement: three lines, each ending in LF (no CR).
	printf 'keyholder-auth-v1\nnonce: %s\nfingerprint: %s\n' "$NONCE" "$FPR" > auth
	party_sign auth
	jq -n --arg f "$FPR" --arg n "$NONCE" --rawfile s auth.asc \
		'{fingerprint: $f, nonce: $n, signature: $s}' > auth.json
	curl -sS --fail-with-body -H 'Content-Type: application/json' \
		--data-binary @auth.json -o auth.out "$SERVER/v1/auth/token" || problem auth.out
	jq -r .token auth.out > token
}

# step_chain USER PIN: docs/protocol.md §5.2. Link 0 adds the pinned first
# device and is signed by it; every later link is signed by a device an
# earlier link added and none revoked; each carried key has the signed
# key-sha256 and fingerprint. The recipients are the active devices in
# the order they were added, then the recovery key.
step_chain() {
	user=$1 pin=$2
	rm -rf chain && mkdir -p chain/devices chain/active
	api -o chain/keys.json "$SERVER/v1/users/$user/keys"
	n=0 prev=none last= order=
	while [ "$(jq ".chain | length > $n" chain/keys.json)" = true ]; do
		l=chain/link$n
		jq -j ".chain[$n].statement" chain/keys.json > $l
		jq -j ".chain[$n].signature" chain/keys.json > $l.asc
		jq -j ".chain[$n].public_key // empty" chain/keys.json > $l.key.asc
		signer=$(field signer $l) key=$(field key $l) action=$(field action $l)
		if [ $n = 0 ]; then
			[ "$action" = add-device ] && [ "$key" = "$pin" ] && [ "$signer" = "$pin" ] ||
				die "link 0 does not add the pinned device $pin"
			cert=$l.key.asc
		else
			[ -e chain/active/$signer ] || die "link $n: signer $signer is not an active device"
			cert=chain/devices/$signer.asc
		fi
		check $cert "$signer" $l $l.asc
		[ "$(head -n 1 $l)" = keyholder-chain-link-v1 ] && [ "$(field user $l)" = "$user" ] &&
			[ "$(field seq $l)" = $n ] && [ "$(field prev $l)" = $prev ] || die "link $n: wrong version, user, seq or prev"
		time=$(field time $l)
		[ -z "$last" ] || [ "$(printf '%s\n%s\n' "$last" "$time" | sort | head -n 1)" = "$last" ] || die "link $n: time before the previous link's"
		case $action in
		add-device | set-recovery)
			[ "$(dearmor < $l.key.asc | sha256sum | cut -d' ' -f1)" = "$(field key-sha256 $l)" ] || die "link $n: key-sha256"
			[ "$(fingerprint $l.key.asc)" = "$key" ] || die "link $n: the key is not $key"
			[ ! -e chain/devices/$key.asc ] || die "link $n: $key was a device before"
			;;
		esac
		case $action in
		add-device) cp $l.key.asc chain/devices/$key.asc && touch chain/active/$key && order="$order $key" ;;
		revoke-device) rm chain/active/$key ;;
		set-recovery) cp $l.key.asc chain/recovery.asc ;;
		remove-recovery) rm chain/recovery.asc ;;
		*) die "link $n: unknown action $action" ;;
		esac
		prev=$(sha256sum < $l | cut -d' ' -f1) last=$time n=$((n + 1))
	done
	[ $n -gt 0 ] || die "the chain is empty"
	: > chain/recipients
	for k in $order; do
		[ ! -e chain/active/$k ] || echo chain/devices/$k.asc >> chain/recipients
	done
	[ ! -e chain/recovery.asc ] || echo chain/recovery.asc >> chain/recipients
	echo "chain of $user: $n links, $(wc -l < chain/recipients) keys to seal to"
}

# step_seal USER FILE TITLE: docs/protocol.md §3, §6.6.
step_seal() {
	user=$1 file=$2 title=$3
	party_encrypt msg.pgp $(cat chain/recipients) < "$file"
	# The private metadata: JSON {"title","filename"}, sealed the same way.
	jq -cn --arg t "$title" --arg f "${file##*/}" '{title: $t, filename: $f}' |
		party_encrypt private.pgp $(cat chain/recipients)
	# The public metadata: exactly these bytes are uploaded and hashed.
	printf '{"content_type":"application/octet-stream","size":%d,"purpose":"lab results"}' \
		"$(wc -c < "$file")" > metadata.json
	# The digests the submission statement signs.
	off=$(data_offset msg.pgp)
	kp=$(head -c "$off" msg.pgp | sha256sum | cut -d' ' -f1)
	ct=$(tail -c +$((off + 1)) msg.pgp | sha256sum | cut -d' ' -f1)
	size=$(($(wc -c < msg.pgp) - off))
	md=$(metadata_sha256 metadata.json private.pgp)
	printf 'keyholder-submission-v2\nuser: %s\nsubmitter: %s\nkey-packets-sha256: %s\nciphertext-sha256: %s\nciphertext-size: %s\nmetadata-sha256: %s\n' \
		"$user" "$(cat party.fpr)" "$kp" "$ct" "$size" "$md" > submission
	party_sign submission
	# One multipart upload, parts in this order.
	api -F 'metadata=@metadata.json;type=application/json' \
		-F 'private=@private.pgp;type=application/octet-stream' \
		-F 'body=@msg.pgp;type=application/octet-stream' \
		-F 'statement=@submission;type=text/plain' \
		-F 'signature=@submission.asc;type=application/pgp-signature' \
		"$SERVER/v1/users/$user/records" > record.json || problem record.json
	jq -r .id record.json
}

# step_approval RECORD: docs/protocol.md §4.2, §6.9.
step_approval() {
	rec=$1
	for _ in $(seq 1 30); do
		api -o record.json "$SERVER/v1/records/$rec?wait=25"
		[ "$(jq -r .state record.json)" = pending ] || break
	done
	verify_approval "$rec"
}

# verify_approval RECORD: the approval in record.json is signed by a
# device of the verified chain and binds this record and its digests.
verify_approval() {
	rec=$1
	[ "$(jq -r .state record.json)" = approved ] || die "record $rec is $(jq -r .state record.json)"
	jq -j .decision_statement record.json > approval
	jq -j .decision_signature record.json > approval.asc
	dev=$(field device approval)
	[ -e chain/devices/$dev.asc ] || die "approved by $dev, not a device of the verified chain"
	check chain/devices/$dev.asc "$dev" approval approval.asc
	[ "$(head -n 1 approval)" = keyholder-approval-v2 ] && [ "$(field record approval)" = "$rec" ] &&
		[ "$(field user approval)" = "$(jq -r .user_id record.json)" ] || die "the approval is not for record $rec"
	# A record this party sealed: the digests it computed are the approved ones.
	if [ "$(field submitter approval)" = "$(cat party.fpr)" ] && [ -e submission ]; then
		for f in key-packets-sha256 ciphertext-sha256 ciphertext-size metadata-sha256; do
			[ "$(field $f approval)" = "$(field $f submission)" ] || die "the approval's $f is not the one sealed"
		done
		grep -qx "chain/devices/$dev.asc" chain/recipients || die "approved by $dev, which it was not sealed to"
	fi
	echo "record $rec approved by device $dev"
}

# step_request RECORD PURPOSE: docs/protocol.md §6.8. A key that cannot
# receive the record's profile is refused at once (422 incompatible-key).
step_request() {
	jq -n --arg p "$2" '{purpose: $p}' > access.json
	code=$(curl -sS -o access.out -w '%{http_code}' -H "Authorization: Bearer $(cat token)" \
		-H 'Content-Type: application/json' --data-binary @access.json "$SERVER/v1/records/$1/access")
	case $code in
	202 | 200) jq -r .request_id access.out > request.id ;;
	*) jq -r '.type | sub(".*/"; "")' access.out; jq -r .detail access.out >&2; exit 3 ;;
	esac
}

# step_open RECORD PURPOSE OUT: docs/protocol.md §4.3, §6.8 step 6.
step_open() {
	rec=$1 purpose=$2 out=$3
	for _ in $(seq 1 300); do
		api -o grant.json "$SERVER/v1/records/$rec/grant" 2> /dev/null && break
		sleep 0.1
	done
	[ -s grant.json ] && jq -e .statement grant.json > /dev/null || die "no grant for record $rec"
	# A party sees a record it did not submit once it is granted.
	api -o record.json "$SERVER/v1/records/$rec"
	verify_approval "$rec"
	jq -j .statement grant.json > grant
	jq -j .signature grant.json > grant.asc
	jq -r .key_packet grant.json | base64 -d > key_packet.bin
	dev=$(jq -r .device_fingerprint grant.json)
	[ -e chain/devices/$dev.asc ] || die "granted by $dev, not a device of the verified chain"
	check chain/devices/$dev.asc "$dev" grant grant.asc
	[ "$(head -n 1 grant)" = keyholder-grant-v1 ] && [ "$(field record grant)" = "$rec" ] &&
		[ "$(field grantee grant)" = "$(cat party.fpr)" ] && [ "$(field request grant)" = "$(cat request.id)" ] &&
		[ "$(field key-packet-sha256 grant)" = "$(sha256sum < key_packet.bin | cut -d' ' -f1)" ] &&
		[ "$(field purpose-sha256 grant)" = "$(printf %s "$purpose" | sha256sum | cut -d' ' -f1)" ] ||
		die "the grant is not for this record, party, request, key packet and purpose"
	# The message: the granted key packet, then the approved data packet.
	api -o content.pgp "$SERVER/v1/records/$rec/content"
	off=$(data_offset content.pgp)
	head -c "$off" content.pgp | cmp -s - key_packet.bin || die "the key packet served is not the granted one"
	[ "$(tail -c +$((off + 1)) content.pgp | sha256sum | cut -d' ' -f1)" = "$(field ciphertext-sha256 approval)" ] ||
		die "the data packet is not the approved one"
	party_decrypt content.pgp "$out"
	echo "record $rec opened to $out"
}

step=$1
shift
"step_$step" "$@"
