#!/bin/sh
# Regenerates the GnuPG-made key chain fixture:
#   gnupg-device.asc        public key of a device whose key GnuPG generated
#   gnupg-genesis.txt       the first link of its user's chain, adding that key
#   gnupg-genesis.txt.asc   its armored detached signature, made by gpg
# TestGnuPGMadeLink checks that keychain.Verify accepts the link, and
# TestCode that the key's device code has not changed (update
# gnupgDeviceCode in keychain_test.go after running this). The key-sha256
# is the SHA-256 of `gpg --export`, which must equal keychain.KeyHash.
# Run from this directory with GnuPG 2.2+.
set -eu
home=$(mktemp -d)
trap 'gpgconf --homedir "$home" --kill all 2>/dev/null || true; rm -rf "$home"' EXIT
chmod 700 "$home"
g() { gpg --homedir "$home" --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }
g --quick-gen-key 'Example Phone <phone@example.org>' future-default default never
fpr=$(g --with-colons --list-keys | awk -F: '/^fpr:/ { print $10; exit }')
g --armor --export "$fpr" > gnupg-device.asc
keysha=$(g --export "$fpr" | sha256sum | cut -d' ' -f1)
printf '%s\n' \
	keyholder-chain-link-v1 \
	'user: alice' \
	'seq: 0' \
	'prev: none' \
	'action: add-device' \
	"key: $fpr" \
	"key-sha256: $keysha" \
	"signer: $fpr" \
	"time: $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	> gnupg-genesis.txt
rm -f gnupg-genesis.txt.asc
g --digest-algo SHA256 --armor --detach-sign -o gnupg-genesis.txt.asc gnupg-genesis.txt
