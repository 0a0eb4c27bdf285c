#!/bin/sh
# Regenerates the GnuPG-made statement signature fixture:
#   gnupg-party.asc            public key of a party whose key GnuPG generated
#   gnupg-submission.txt       a submission statement naming that key
#   gnupg-submission.txt.asc   its armored detached signature, made by gpg
#   gnupg-submission.txt.sig   its binary detached signature, made by gpg
# TestVerifyGnuPGFixture checks that statement.Verify accepts both signatures,
# without needing gpg at test time. Run from this directory with GnuPG 2.2+.
# (retired/ keeps the v1 fixture this script made before keyholder-submission-v2,
# which TestStatementRetiredV1 checks is refused.)
set -eu
home=$(mktemp -d)
trap 'gpgconf --homedir "$home" --kill all 2>/dev/null || true; rm -rf "$home"' EXIT
chmod 700 "$home"
g() { gpg --homedir "$home" --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }
g --quick-gen-key 'Example Party <party@example.org>' future-default default never
fpr=$(g --with-colons --list-keys | awk -F: '/^fpr:/ { print $10; exit }')
g --armor --export "$fpr" > gnupg-party.asc
printf '%s\n' \
	keyholder-submission-v2 \
	'user: 0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f' \
	"submitter: $fpr" \
	'key-packets-sha256: 67e009bfc34442734b0c0b4db6091904a798eec439c449e98483309a08e9b85e' \
	'ciphertext-sha256: b8525b6235c7ac351667c3fc8a4f74965079ee480d9e9b19a7374f6e01a66cf8' \
	'ciphertext-size: 1048576' \
	'metadata-sha256: 779c4125cd74cb10e987e7734a134d58b1767d2e775964a05575f5d2c11f1176' \
	> gnupg-submission.txt
rm -f gnupg-submission.txt.asc gnupg-submission.txt.sig
g --digest-algo SHA256 --armor --detach-sign -o gnupg-submission.txt.asc gnupg-submission.txt
g --digest-algo SHA256 --detach-sign -o gnupg-submission.txt.sig gnupg-submission.txt
g --verify gnupg-submission.txt.asc gnupg-submission.txt
echo "made fixture for $fpr"
