#!/bin/bash
# rnp.sh STEP ARGS: a Keyholder party with RNP 0.16 (steps: lib.sh;
# walk-through: docs/parties.md). The party's keyring is ./rnp.

party_keygen() { # NAME ed25519|rsa3072
	mkdir -p -m 700 rnp
	case $2 in
	ed25519) # --expert asks for the algorithm: 22 is EdDSA (signs) with an X25519 subkey (encrypts)
		printf '22\n' | rnpkeys --homedir rnp --generate-key --expert --userid "$1" --password '' ;;
	rsa3072) # RSA-3072 primary key (signs), RSA-3072 subkey (encrypts)
		rnpkeys --homedir rnp --generate-key --numbits 3072 --userid "$1" --password '' ;;
	esac
	rnpkeys --homedir rnp --export-key "$1" > party.asc
}

party_sign() { # FILE
	rnp --homedir rnp --sign --detach --armor --hash SHA256 --password '' "$1" --output "$1.asc"
}

party_verify() { # CERT FILE SIG: with the key in CERT only (--keyfile: no keyring)
	rnp --keyfile "$1" --verify "$3" --source "$2"
}

party_encrypt() { # OUT CERT...: binary, uncompressed (-z 0; rnp compresses by default)
	out=$1
	shift
	rm -rf seal-keys && mkdir -m 700 seal-keys
	for cert; do rnpkeys --homedir seal-keys --import "$cert" > /dev/null; done
	rnp --homedir seal-keys --encrypt -z 0 $(for cert; do printf -- '--recipient %s ' "$(fingerprint "$cert")"; done) --output "$out" -
}

party_decrypt() { # IN OUT
	rnp --homedir rnp --decrypt --password '' "$1" --output "$2"
}

. "$(dirname "$0")/lib.sh"
