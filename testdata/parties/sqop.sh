#!/bin/bash
# sqop.sh STEP ARGS: a Keyholder party with sqop 0.27, Sequoia's Stateless
# OpenPGP (SOP) command line (steps: lib.sh; walk-through:
# docs/parties.md). The party's key is ./party.key.

party_keygen() { # NAME ed25519: sqop makes Ed25519 and Cv25519 keys only
	sqop generate-key "$1" > party.key
	sqop extract-cert < party.key > party.asc
}

party_sign() { # FILE
	sqop sign --as=binary party.key < "$1" > "$1.asc"
}

party_verify() { # CERT FILE SIG
	sqop verify "$3" "$1" < "$2"
}

party_encrypt() { # OUT CERT...: sqop encrypt does not compress
	out=$1
	shift
	sqop encrypt --as=binary --no-armor "$@" > "$out"
}

party_decrypt() { # IN OUT
	sqop decrypt party.key < "$1" > "$2"
}

. "$(dirname "$0")/lib.sh"
