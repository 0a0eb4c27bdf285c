#!/bin/bash
# sq.sh STEP ARGS: a Keyholder party with Sequoia's sq 0.27 (steps: lib.sh;
# walk-through: docs/parties.md). The party's key is ./party.key.

party_keygen() { # NAME ed25519|rsa3072
	case $2 in ed25519) suite=cv25519 ;; rsa3072) suite=rsa3k ;; esac
	# A certify-only primary key with signing and encryption subkeys.
	sq key generate --cipher-suite $suite --userid "$1" --export party.key
	sq key extract-cert party.key > party.asc
}

party_sign() { # FILE: binary (--cleartext-signature would make a text signature)
	sq sign --detached --signer-key party.key "$1" > "$1.asc"
}

party_verify() { # CERT FILE SIG
	sq verify --detached "$3" --signer-cert "$1" "$2"
}

party_encrypt() { # OUT CERT...: sq compresses (pads) unless told not to
	out=$1
	shift
	sq encrypt --binary --compression none $(printf -- '--recipient-cert %s ' "$@") --output "$out"
}

party_decrypt() { # IN OUT
	sq decrypt --recipient-key party.key --output "$2" "$1"
}

. "$(dirname "$0")/lib.sh"
