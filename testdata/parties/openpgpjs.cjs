// The OpenPGP.js 6 operations of openpgpjs.sh (a Keyholder party with
// OpenPGP.js; docs/parties.md). The party's key is ./party.key.
//
//   node openpgpjs.cjs keygen NAME v6|ed25519
//   node openpgpjs.cjs sign FILE                  (writes FILE.asc)
//   node openpgpjs.cjs verify CERT FILE SIG
//   node openpgpjs.cjs encrypt compat|modern OUT CERT...   (plaintext on stdin)
//   node openpgpjs.cjs decrypt IN OUT
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { createRequire } = require('module');

const dir = process.env.KEYHOLDER_TEST_OPENPGPJS;
if (!dir) throw new Error('KEYHOLDER_TEST_OPENPGPJS is not set (the node_modules directory holding openpgp)');
const openpgp = createRequire(path.join(path.resolve(dir), 'noop.js'))('openpgp');

const readKey = (f) => openpgp.readKey({ armoredKey: fs.readFileSync(f, 'utf8') });
const partyKey = () => openpgp.readPrivateKey({ armoredKey: fs.readFileSync('party.key', 'utf8') });

const commands = {
  // v6: a v6 key (RFC 9580), Ed25519 primary key and X25519 subkey, which
  // can receive modern records only (a v3 key packet cannot be addressed
  // to a v6 key). ed25519: a v4 key (EdDSA, Cv25519), which can receive
  // both. aeadProtect makes the key advertise SEIPDv2: without it, a v4
  // key could receive compat records only, and a v6 key nothing.
  async keygen(name, type) {
    const { privateKey, publicKey } = await openpgp.generateKey({
      type: 'curve25519', userIDs: [{ name }], format: 'armored',
      config: { v6Keys: type === 'v6', aeadProtect: true },
    });
    fs.writeFileSync('party.key', privateKey, { mode: 0o600 });
    fs.writeFileSync('party.asc', publicKey);
  },

  // A detached signature of type binary: the message is binary data, not text.
  async sign(file) {
    const signature = await openpgp.sign({
      message: await openpgp.createMessage({ binary: fs.readFileSync(file) }),
      signingKeys: await partyKey(), detached: true, format: 'armored',
    });
    fs.writeFileSync(file + '.asc', signature);
  },

  async verify(cert, file, sig) {
    const { signatures } = await openpgp.verify({
      message: await openpgp.createMessage({ binary: fs.readFileSync(file) }),
      signature: await openpgp.readSignature({ armoredSignature: fs.readFileSync(sig, 'utf8') }),
      verificationKeys: await readKey(cert), expectSigned: true,
    });
    await signatures[0].verified; // throws if it does not verify
  },

  // compat: OpenPGP.js 6 picks SEIPDv2 for keys that advertise it, as
  // Keyholder's device keys do; an explicit AES-256 session key without an
  // AEAD algorithm makes it write v3 key packets and SEIPDv1 instead.
  // modern: the session key OpenPGP.js picks: v6 key packets, SEIPDv2.
  async encrypt(profile, out, ...certs) {
    const encryptionKeys = await Promise.all(certs.map(readKey));
    const sessionKey = profile === 'compat'
      ? { data: new Uint8Array(crypto.randomBytes(32)), algorithm: 'aes256' }
      : await openpgp.generateSessionKey({ encryptionKeys });
    const encrypted = await openpgp.encrypt({
      message: await openpgp.createMessage({ binary: fs.readFileSync(0) }),
      encryptionKeys, sessionKey, format: 'binary',
      config: { preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed },
    });
    fs.writeFileSync(out, encrypted);
  },

  async decrypt(input, out) {
    const { data } = await openpgp.decrypt({
      message: await openpgp.readMessage({ binaryMessage: fs.readFileSync(input) }),
      decryptionKeys: await partyKey(), format: 'binary',
    });
    fs.writeFileSync(out, data);
  },
};

const [cmd, ...args] = process.argv.slice(2);
if (!commands[cmd]) {
  process.stderr.write('usage: node openpgpjs.cjs keygen|sign|verify|encrypt|decrypt ARGS\n');
  process.exit(2);
}
commands[cmd](...args).catch((err) => {
  process.stderr.write(`openpgpjs.cjs ${cmd}: ${err.message || err}\n`);
  process.exit(1);
});
