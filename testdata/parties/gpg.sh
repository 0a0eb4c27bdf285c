#!/bin/bash
# gpg.sh STEP ARGS: a Keyholder party with GnuPG 2.2 or later (steps: lib.sh;
# walk-through: docs/parties.md). The party's keyring is ./gnupg.
export GNUPGHOME=$PWD/gnupg
trap 'gpgconf --kill gpg-agent' EXIT # no agent left running

party_keygen() { # NAME ed25519|rsa3072
	mkdir -p -m 700 "$GNUPGHOME"
	case $2 in
	ed25519) # Ed25519 primary key (signs), Cv25519 subkey (encrypts)
		gpg --batch --passphrase '' --quick-gen-key "$1" future-default default never ;;
	rsa3072) # "rsa3072" alone makes a key that only signs: add the encryption subkey
		gpg --batch --passphrase '' --quick-gen-key "$1" rsa3072 sign,cert never
		fpr=$(gpg --with-colons --list-keys "$1" | sed -n 's/^fpr:*\([0-9A-F]*\):$/\1/p' | head -n 1)
		gpg --batch --passphrase '' --quick-add-key "$fpr" rsa3072 encr never ;;
	esac
	gpg --armor --export "$1" > party.asc
}

party_sign() { # FILE: binary (no --textmode, no --clearsign), SHA-256
	gpg --batch --yes --armor --detach-sign --digest-algo SHA256 -o "$1.asc" "$1"
}

party_verify() { # CERT FILE SIG: gpgv, against CERT alone, not the keyring
	gpg --dearmor < "$1" > "$1.gpg"
	gpgv --keyring "$PWD/$1.gpg" "$3" "$2"
}

party_encrypt() { # OUT CERT...: exactly these keys, binary, uncompressed
	out=$1
	shift
	gpg --batch --yes -z 0 --output "$out" --encrypt $(printf -- '--recipient-file %s ' "$@")
}

party_decrypt() { # IN OUT
	gpg --batch --yes --output "$2" --decrypt "$1"
}

. "$(dirname "$0")/lib.sh"
