// Seals a file with OpenPGP.js to armored public keys, as a party using
// OpenPGP.js would, for pkg/envelope/foreign_test.go.
//
//   node seal.js compat|modern PLAINTEXT OUT KEY.asc...
//
// OpenPGP.js is loaded from the node_modules directory named by
// KEYHOLDER_TEST_OPENPGPJS (.ci/run installs the version pinned in
// package.json there). The message is written to OUT in binary, without
// compression. On standard output: one JSON line with the OpenPGP.js
// version and the session key it used (hex), which OpenPGP.js reports
// because the script chooses it:
//
//   compat: an explicit AES-256 session key without an AEAD algorithm, so
//           OpenPGP.js writes v3 key packets and a SEIPDv1 data packet.
//           Left to itself, OpenPGP.js 6 picks SEIPDv2 for keys that
//           advertise it, as Keyholder's device keys do.
//   modern: the session key OpenPGP.js picks from the keys' preferences
//           (generateSessionKey): v6 key packets and a SEIPDv2 data packet.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { createRequire } = require('module');

async function main() {
  const [mode, plaintextFile, outFile, ...keyFiles] = process.argv.slice(2);
  if (!['compat', 'modern'].includes(mode) || !outFile || keyFiles.length === 0) {
    throw new Error('usage: node seal.js compat|modern PLAINTEXT OUT KEY.asc...');
  }
  const dir = process.env.KEYHOLDER_TEST_OPENPGPJS;
  if (!dir) {
    throw new Error('KEYHOLDER_TEST_OPENPGPJS is not set (the node_modules directory holding openpgp)');
  }
  const from = createRequire(path.join(path.resolve(dir), 'noop.js'));
  const openpgp = from('openpgp');
  const version = JSON.parse(fs.readFileSync(path.join(path.resolve(dir), 'openpgp', 'package.json'), 'utf8')).version;

  const encryptionKeys = await Promise.all(keyFiles.map(async (f) =>
    openpgp.readKey({ armoredKey: fs.readFileSync(f, 'utf8') })));
  let sessionKey;
  if (mode === 'compat') {
    sessionKey = { data: new Uint8Array(crypto.randomBytes(32)), algorithm: 'aes256' };
  } else {
    sessionKey = await openpgp.generateSessionKey({ encryptionKeys });
  }
  const message = await openpgp.createMessage({ binary: fs.readFileSync(plaintextFile) });
  const encrypted = await openpgp.encrypt({
    message,
    encryptionKeys,
    sessionKey,
    format: 'binary',
    config: { preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed },
  });
  fs.writeFileSync(outFile, encrypted);
  process.stdout.write(JSON.stringify({
    version,
    algorithm: sessionKey.algorithm,
    aeadAlgorithm: sessionKey.aeadAlgorithm || null,
    sessionKey: Buffer.from(sessionKey.data).toString('hex'),
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`seal.js: ${err.stack || err}\n`);
  process.exit(1);
});
