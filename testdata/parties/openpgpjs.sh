#!/bin/bash
# openpgpjs.sh STEP ARGS: a Keyholder party with OpenPGP.js 6 under Node
# (steps: lib.sh; walk-through: docs/parties.md); the OpenPGP.js calls are
# in openpgpjs.cjs. KEYHOLDER_TEST_OPENPGPJS names the node_modules
# directory holding openpgp. PROFILE=modern seals SEIPDv2 (OpenPGP.js's
# own choice for Keyholder's device keys); the default, compat, SEIPDv1.
ojs() { node "$(dirname "$0")/openpgpjs.cjs" "$@"; }

party_keygen() { # NAME v6|ed25519: a v6 key (Ed25519, X25519) or a v4 key (EdDSA, Cv25519)
	ojs keygen "$1" "$2"
}

party_sign() { # FILE
	ojs sign "$1"
}

party_verify() { # CERT FILE SIG
	ojs verify "$1" "$2" "$3"
}

party_encrypt() { # OUT CERT...
	ojs encrypt "${PROFILE:-compat}" "$@"
}

party_decrypt() { # IN OUT
	ojs decrypt "$1" "$2"
}

. "$(dirname "$0")/lib.sh"
