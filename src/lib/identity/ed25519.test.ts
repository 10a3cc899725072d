// The browser-safe Ed25519 signer (@noble/curves) against RFC 8032's test vector and, byte for byte, against Node's (OpenSSL's).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { base64url } from './base64url.ts';
import { ed25519PublicKey, ed25519Sign, signEdDsaJwt } from './ed25519.ts';
import { verifyJwt } from './jwt.ts';

const PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const nodeKey = (secret: Uint8Array) => createPrivateKey({ key: Buffer.concat([PKCS8, secret]), format: 'der', type: 'pkcs8' });
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('ed25519 (browser-safe)', () => {
  it('matches RFC 8032 §7.1 test 1 and test 3', () => {
    const s1 = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    assert.equal(hex(ed25519PublicKey(s1)), 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    assert.equal(
      hex(ed25519Sign(s1, new Uint8Array())),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    const s3 = Buffer.from('c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'hex');
    assert.equal(
      hex(ed25519Sign(s3, Buffer.from('af82', 'hex'))),
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
    );
  });

  it('gives the same public keys and signatures as node:crypto, which verifies them', () => {
    for (let i = 0; i < 20; i++) {
      const secret = randomBytes(32);
      const msg = randomBytes(i * 17);
      const pub = createPublicKey(nodeKey(secret)).export({ format: 'der', type: 'spki' }).subarray(12);
      assert.equal(hex(ed25519PublicKey(secret)), hex(pub));
      const sig = ed25519Sign(secret, msg);
      assert.equal(hex(sig), hex(sign(null, msg, nodeKey(secret))));
      assert.ok(verify(null, msg, createPublicKey(nodeKey(secret)), sig));
    }
  });

  it('refuses a secret of the wrong length', () => {
    assert.throws(() => ed25519Sign(new Uint8Array(31), new Uint8Array()), /length 32/);
  });

  it('encodes base64url like Node, and signs JWTs that jose verifies', async () => {
    for (let n = 0; n < 40; n++) {
      const b = randomBytes(n);
      assert.equal(base64url(b), b.toString('base64url'));
    }
    const secret = randomBytes(32);
    const jwt = signEdDsaJwt({ typ: 'owner', n: 1, s: '雪' }, secret);
    const payload = await verifyJwt(jwt, createPublicKey(nodeKey(secret)));
    assert.deepEqual({ typ: payload.typ, n: payload.n, s: payload.s }, { typ: 'owner', n: 1, s: '雪' });
  });
});
