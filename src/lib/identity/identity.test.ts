import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { KrpcError } from '../krpc/index.ts';
import {
  didDev, didWeb, generateKeyPair, hostFromDidWeb, keyFromDidDev, keyPairFromSeed, publicKeyFromB64, publicKeyToB64,
  saveKeyFile, signBytes, verifyBytes,
} from './keys.ts';
import { JwtError, peekJwt, signJwt, verifyJwt } from './jwt.ts';
import {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, DocumentError, type OwnerDoc, type ZoneBootConfig, signDocument, verifyDeviceDoc,
  verifyOwnerDoc, verifyZoneBootConfig,
} from './documents.ts';
import { VERIFY_HUB_KID, createTokenVerifier, signAccessToken } from './tokens.ts';
import { IDENTITY_FILES, isActivated, loadNodeIdentity, writeZoneFile } from './node-identity.ts';
import {
  MnemonicError, OWNER_KEY_PATH, checkMnemonic, generateMnemonic, mnemonicToSeed, normalizeMnemonic, ownerKeyFromMnemonic,
  slip10DeriveEd25519,
} from './mnemonic.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const rawPublicHex = (b64: string): string => Buffer.from(b64, 'base64url').toString('hex');
const now = (): number => Math.floor(Date.now() / 1000);

const ABOUT = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';
const LEGAL = 'legal winner thank year wave sausage worth useful legal winner thank yellow';

function rejectsWith<T extends Error>(p: Promise<unknown>, type: new (...a: never[]) => T, check: (e: T) => boolean): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
    assert.ok(check(e), `unexpected ${type.name}: ${(e as Error).message}`);
    return true;
  });
}

describe('SLIP-0010 ed25519 (spec test vector 1)', () => {
  const seed = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

  it('derives the master key and chain code', () => {
    const m = slip10DeriveEd25519(seed, 'm');
    assert.equal(hex(m.key), '2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7');
    assert.equal(hex(m.chainCode), '90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb');
    // The spec writes ed25519 public keys with a 0x00 prefix.
    assert.equal(`00${rawPublicHex(keyPairFromSeed(m.key).publicKeyB64)}`, '00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed');
  });

  it("derives the m/0' child", () => {
    const c = slip10DeriveEd25519(seed, "m/0'");
    assert.equal(hex(c.key), '68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3');
    assert.equal(hex(c.chainCode), '8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69');
    assert.equal(`00${rawPublicHex(keyPairFromSeed(c.key).publicKeyB64)}`, '008c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c');
    assert.deepEqual(slip10DeriveEd25519(seed, "m/0H"), c);
  });

  it('refuses non-hardened levels and malformed paths', () => {
    assert.throws(() => slip10DeriveEd25519(seed, 'm/0'), /hardened/);
    assert.throws(() => slip10DeriveEd25519(seed, "0'/1'"), /start with "m"/);
    assert.throws(() => slip10DeriveEd25519(seed, "m/2147483648'"), /out of range/);
    assert.throws(() => slip10DeriveEd25519(Buffer.alloc(8), 'm'), /16 to 64 bytes/);
  });
});

describe('BIP-39 mnemonic and the owner key', () => {
  it('yields the BIP-39 test vector seed (passphrase "TREZOR")', () => {
    assert.equal(
      hex(mnemonicToSeed(ABOUT, 'TREZOR')),
      'c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04',
    );
  });

  it('derives a pinned owner key along the documented path', () => {
    assert.equal(OWNER_KEY_PATH, "m/1650682745'/0'/0'/0'");
    // Pinned once; checked independently with Python (hashlib PBKDF2 + HMAC-SHA512 and the cryptography package).
    assert.equal(hex(slip10DeriveEd25519(mnemonicToSeed(LEGAL), OWNER_KEY_PATH).key), '82ce8c44119b3874b51ac1892c75127080b35f2cc34e27adc99d7a390430ceae');
    assert.equal(ownerKeyFromMnemonic(LEGAL).publicKeyB64, '_xuRM5ybHYTTZciXfIXYuyFPZIQv3mTW7DnEzCTAZD4');
  });

  it('normalises case and spacing so the same words always give the same key', () => {
    const messy = `  ${LEGAL.toUpperCase().split(' ').join('  \t')}\n`;
    assert.equal(normalizeMnemonic(messy), LEGAL);
    assert.equal(ownerKeyFromMnemonic(messy).publicKeyB64, ownerKeyFromMnemonic(LEGAL).publicKeyB64);
  });

  it('generates valid, distinct 12-word phrases', () => {
    const a = generateMnemonic();
    const b = generateMnemonic();
    assert.equal(a.split(' ').length, 12);
    assert.equal(checkMnemonic(a), a);
    assert.notEqual(a, b);
  });

  it('says what is wrong with a bad phrase', () => {
    assert.throws(() => checkMnemonic(ABOUT.split(' ').slice(0, 11).join(' ')), (e: unknown) =>
      e instanceof MnemonicError && e.reason === 'word-count' && /12 words, this one has 11/.test(e.message));
    assert.throws(() => checkMnemonic(''), (e: unknown) => e instanceof MnemonicError && e.reason === 'word-count');
    assert.throws(() => checkMnemonic(ABOUT.replace('about', 'abuot')), (e: unknown) =>
      e instanceof MnemonicError && e.reason === 'unknown-word' && e.word === 'abuot' && /word 12, "abuot"/.test(e.message));
    assert.throws(() => checkMnemonic(ABOUT.replace('about', 'abandn')), /did you mean "abandon"/);
    assert.throws(() => checkMnemonic(ABOUT.replace('about', 'abandon')), (e: unknown) =>
      e instanceof MnemonicError && e.reason === 'checksum');
    assert.throws(() => ownerKeyFromMnemonic(ABOUT.replace('about', 'zoo')), MnemonicError);
  });
});

describe('Ed25519 (RFC 8032 test 1)', () => {
  it('derives the public key and signs the empty message', () => {
    const kp = keyPairFromSeed(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
    assert.equal(rawPublicHex(kp.publicKeyB64), 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = signBytes(kp.privateKey, new Uint8Array(0));
    assert.equal(
      hex(sig),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    assert.ok(verifyBytes(kp.publicKey, new Uint8Array(0), sig));
    assert.ok(!verifyBytes(kp.publicKey, new Uint8Array([0]), sig));
    assert.throws(() => keyPairFromSeed(new Uint8Array(31)), /32 bytes/);
  });
});

describe('JWT', () => {
  const kp = generateKeyPair();
  const other = generateKeyPair();

  it('round-trips and carries the kid', async () => {
    const t = await signJwt({ sub: 'alice', n: 1 }, kp.privateKey, { kid: 'k1', expiresInSec: 60 });
    const p = await verifyJwt(t, kp.publicKey);
    assert.equal(p.sub, 'alice');
    assert.equal(p.n, 1);
    assert.equal(peekJwt(t).kid, 'k1');
  });

  it('rejects a tampered payload and another key', async () => {
    const t = await signJwt({ sub: 'alice' }, kp.privateKey, { expiresInSec: 60 });
    const [h, , s] = t.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'admin', iat: now() })).toString('base64url')}.${s}`;
    await rejectsWith(verifyJwt(forged, kp.publicKey), JwtError, (e) => e.reason === 'invalid');
    await rejectsWith(verifyJwt(t, other.publicKey), JwtError, (e) => e.reason === 'invalid');
  });

  it('rejects an expired token', async () => {
    const t = await signJwt({ sub: 'alice' }, kp.privateKey, { expiresInSec: -60 });
    await rejectsWith(verifyJwt(t, kp.publicKey), JwtError, (e) => e.reason === 'expired');
  });

  it('rejects alg "none" and HS256 (key confusion)', async () => {
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const payload = { sub: 'admin', iat: now(), exp: now() + 60 };
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
    await rejectsWith(verifyJwt(none, kp.publicKey), JwtError, (e) => e.reason === 'invalid');
    // The classic confusion attack: HMAC keyed with the verifier's public key, which the attacker knows.
    for (const secret of [Buffer.from(kp.publicKeyB64, 'base64url'), Buffer.from(kp.publicKey.export({ format: 'pem', type: 'spki' }))]) {
      const hs = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secret);
      await rejectsWith(verifyJwt(hs, kp.publicKey), JwtError, (e) => e.reason === 'invalid');
    }
    assert.throws(() => peekJwt('not.a.jwt'), JwtError);
  });
});

describe('documents', () => {
  const owner = generateKeyPair();
  const stranger = generateKeyPair();
  const device = generateKeyPair();
  const hub = generateKeyPair();
  const iat = now();
  const boot: ZoneBootConfig = {
    typ: 'zone-boot', zone: 'alice.example.com', owner: 'alice', owner_key: owner.publicKeyB64,
    verify_hub_key: hub.publicKeyB64, enrol_key: hub.publicKeyB64, core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat, exp: iat + DOCUMENT_LIFETIME_SEC,
  };
  const dev: DeviceDoc = {
    typ: 'device', name: 'ood1', zone: 'alice.example.com', did: didDev(device.publicKeyB64), key: device.publicKeyB64,
    role: 'core', iat, exp: iat + DOCUMENT_LIFETIME_SEC,
  };
  const own: OwnerDoc = { typ: 'owner', name: 'alice', zone: 'alice.example.com', key: owner.publicKeyB64, iat, exp: iat + DOCUMENT_LIFETIME_SEC };

  it('verifies documents signed by the owner key', async () => {
    assert.deepEqual(await verifyZoneBootConfig(await signDocument(boot, owner.privateKey), owner.publicKey), boot);
    assert.deepEqual(await verifyDeviceDoc(await signDocument(dev, owner.privateKey), owner.publicKey), dev);
    assert.deepEqual(await verifyOwnerDoc(await signDocument(own, owner.privateKey)), own);
  });

  it('refuses documents signed by another key', async () => {
    await rejectsWith(verifyZoneBootConfig(await signDocument(boot, stranger.privateKey), owner.publicKey), DocumentError, (e) => e.reason === 'invalid');
    await rejectsWith(verifyDeviceDoc(await signDocument(dev, stranger.privateKey), owner.publicKey), DocumentError, (e) => e.reason === 'invalid');
    // An owner document is self-signed: naming the owner key but signed by another key is a forgery.
    await rejectsWith(verifyOwnerDoc(await signDocument(own, stranger.privateKey)), DocumentError, (e) => e.reason === 'invalid');
  });

  it('refuses expired documents', async () => {
    const old = { iat: iat - 7200, exp: iat - 3600 };
    await rejectsWith(verifyZoneBootConfig(await signDocument({ ...boot, ...old }, owner.privateKey), owner.publicKey), DocumentError,
      (e) => e.reason === 'expired' && /expired/.test(e.message));
    await rejectsWith(verifyDeviceDoc(await signDocument({ ...dev, ...old }, owner.privateKey), owner.publicKey), DocumentError,
      (e) => e.reason === 'expired');
  });

  it('refuses malformed documents', async () => {
    const badZone = await signDocument({ ...boot, zone: 'Not_A_Zone' }, owner.privateKey);
    await rejectsWith(verifyZoneBootConfig(badZone, owner.publicKey), DocumentError, (e) => e.reason === 'malformed' && /zone/.test(e.message));
    const { core_nodes: _, ...noNodes } = boot;
    const missing = await signJwt(noNodes, owner.privateKey);
    await rejectsWith(verifyZoneBootConfig(missing, owner.publicKey), DocumentError, (e) => e.reason === 'malformed' && /core_nodes/.test(e.message));
    // A document of another type never passes for a zone boot config.
    await rejectsWith(verifyZoneBootConfig(await signDocument(dev, owner.privateKey), owner.publicKey), DocumentError, (e) => e.reason === 'malformed');
    const wrongDid = await signDocument({ ...dev, did: didDev(stranger.publicKeyB64) }, owner.privateKey);
    await rejectsWith(verifyDeviceDoc(wrongDid, owner.publicKey), DocumentError, (e) => e.reason === 'malformed' && /did/.test(e.message));
    await rejectsWith(verifyDeviceDoc('garbage', owner.publicKey), DocumentError, (e) => e.reason === 'invalid');
    await rejectsWith(verifyOwnerDoc('a.b.c'), DocumentError, (e) => e.reason === 'invalid');
  });
});

describe('DIDs', () => {
  it('round-trips did:dev', () => {
    const kp = generateKeyPair();
    const did = didDev(kp.publicKeyB64);
    assert.match(did, /^did:dev:[A-Za-z0-9_-]{43}$/);
    assert.equal(publicKeyToB64(keyFromDidDev(did)), kp.publicKeyB64);
  });

  it('rejects bad did:dev input', () => {
    const kp = generateKeyPair();
    assert.throws(() => keyFromDidDev('did:dev:abc'), /not a did:dev/);
    assert.throws(() => keyFromDidDev(`did:web:${kp.publicKeyB64}`), /not a did:dev/);
    assert.throws(() => keyFromDidDev(`did:dev:${kp.publicKeyB64}=`), /not a did:dev/);
    assert.throws(() => didDev('AAAA'), /32 bytes/);
    // 43 base64url characters hold 258 bits for 256: the spare bits make aliases, and only the canonical one passes.
    const raw = Buffer.alloc(32, 7);
    const canonical = raw.toString('base64url');
    const alias = canonical.slice(0, -1) + String.fromCharCode(canonical.charCodeAt(42) + 1);
    assert.throws(() => publicKeyFromB64(alias), /unpadded base64url/);
  });

  it('round-trips did:web and rejects bad hosts', () => {
    assert.equal(didWeb('alice.example.com'), 'did:web:alice.example.com');
    assert.equal(hostFromDidWeb('did:web:alice.example.com'), 'alice.example.com');
    for (const bad of ['localhost', 'Alice.example.com', 'a..example.com', '-a.example.com', 'a_b.example.com', 'alice.example.123', 'x.y']) {
      assert.throws(() => didWeb(bad), /not a valid zone host/, bad);
    }
    assert.throws(() => hostFromDidWeb('did:dev:alice.example.com'), /not a did:web/);
    assert.throws(() => hostFromDidWeb('did:web:bad_host.example.com'), /valid host/);
  });
});

describe('createTokenVerifier', () => {
  const hub = generateKeyPair();
  const dev = generateKeyPair();
  const devDid = didDev(dev.publicKeyB64);
  const verify = createTokenVerifier(() => ({ verifyHubKey: hub.publicKey, device: (did) => (did === devDid ? { key: dev.publicKey, name: 'ood1', role: 'core' } : undefined) }));
  const session = { typ: 'session' as const, sub: 'alice', app: 'control-panel', sid: 's1', jti: 'j1' };
  const code = (c: string) => (e: KrpcError) => e.code === c;

  it('accepts a verify-hub-signed session token', async () => {
    const p = await verify(await signAccessToken(session, hub.privateKey, 900, VERIFY_HUB_KID));
    assert.equal(p.userId, 'alice');
    assert.equal(p.appId, 'control-panel');
    assert.equal(p.kind, 'session');
    assert.equal(p.sessionId, 's1');
    assert.equal(p.device, undefined);
    assert.equal(p.deviceRole, undefined);
  });

  it('accepts a device-signed service token for a kernel service only, naming the device', async () => {
    const svc = { typ: 'service' as const, sub: 'scheduler', app: 'scheduler', jti: 'j2' };
    const p = await verify(await signAccessToken(svc, dev.privateKey, 60, devDid));
    assert.deepEqual([p.kind, p.device, p.deviceName, p.deviceRole], ['service', devDid, 'ood1', 'core']);
    await rejectsWith(verify(await signAccessToken({ ...svc, sub: 'evil' }, dev.privateKey, 60, devDid)), KrpcError, code('UNAUTHENTICATED'));
  });

  it('rejects a device-signed session token', async () => {
    await rejectsWith(verify(await signAccessToken(session, dev.privateKey, 900, devDid)), KrpcError,
      (e) => e.code === 'UNAUTHENTICATED' && /service tokens/.test(e.message));
  });

  it('rejects unknown or missing kids and wrong signers', async () => {
    const stranger = generateKeyPair();
    await rejectsWith(verify(await signAccessToken(session, hub.privateKey, 900, 'some-other-hub')), KrpcError, code('UNAUTHENTICATED'));
    await rejectsWith(verify(await signAccessToken(session, stranger.privateKey, 900, didDev(stranger.publicKeyB64))), KrpcError, code('UNAUTHENTICATED'));
    await rejectsWith(verify(await signJwt({ ...session }, hub.privateKey, { expiresInSec: 900 })), KrpcError, code('UNAUTHENTICATED'));
    await rejectsWith(verify(await signAccessToken(session, stranger.privateKey, 900, VERIFY_HUB_KID)), KrpcError, code('UNAUTHENTICATED'));
    await rejectsWith(verify('nonsense'), KrpcError, code('UNAUTHENTICATED'));
  });

  it('maps expiry to TOKEN_EXPIRED', async () => {
    await rejectsWith(verify(await signAccessToken(session, hub.privateKey, -60, VERIFY_HUB_KID)), KrpcError, code('TOKEN_EXPIRED'));
  });
});

describe('node identity on disk', () => {
  let etc: string;
  const owner = ownerKeyFromMnemonic(LEGAL);
  const device = generateKeyPair();
  const hub = generateKeyPair();

  before(async () => {
    etc = join(mkdtempSync(join(tmpdir(), 'bk-identity-')), 'etc');
    const iat = now();
    const exp = iat + DOCUMENT_LIFETIME_SEC;
    const zone = 'alice.example.com';
    assert.equal(isActivated(etc), false);
    saveKeyFile(join(etc, IDENTITY_FILES.deviceKey), device);
    writeZoneFile(etc, {
      owner_key: owner.publicKeyB64,
      zone_boot_jwt: await signDocument({
        typ: 'zone-boot', zone, owner: 'alice', owner_key: owner.publicKeyB64, verify_hub_key: hub.publicKeyB64, enrol_key: hub.publicKeyB64,
        core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat, exp,
      }, owner.privateKey),
      device_doc_jwt: await signDocument({
        typ: 'device', name: 'ood1', zone, did: didDev(device.publicKeyB64), key: device.publicKeyB64, role: 'core', iat, exp,
      }, owner.privateKey),
      owner_doc_jwt: await signDocument({ typ: 'owner', name: 'alice', zone, key: owner.publicKeyB64, iat, exp }, owner.privateKey),
      activated_at: new Date().toISOString(),
    });
  });
  after(() => rmSync(join(etc, '..'), { recursive: true, force: true }));

  const zonePath = (): string => join(etc, IDENTITY_FILES.zone);
  async function withZoneFile(edit: (z: Record<string, string>) => string, check: (e: DocumentError) => boolean): Promise<void> {
    const original = readFileSync(zonePath(), 'utf8');
    try {
      writeFileSync(zonePath(), edit(JSON.parse(original)));
      await rejectsWith(loadNodeIdentity(etc), DocumentError, check);
    } finally {
      writeFileSync(zonePath(), original);
    }
  }

  it('loads and verifies a valid identity', async () => {
    assert.equal(isActivated(etc), true);
    const id = await loadNodeIdentity(etc);
    assert.equal(id.boot.zone, 'alice.example.com');
    assert.equal(id.device.name, 'ood1');
    assert.equal(id.deviceKey.publicKeyB64, device.publicKeyB64);
    assert.equal(publicKeyToB64(id.verifyHubKey), hub.publicKeyB64);
    assert.equal(id.ownerDoc?.name, 'alice');
  });

  it('detects a tampered zone.json', async () => {
    // Payload swapped under the original signature.
    await withZoneFile((z) => {
      const [h, p, s] = z.zone_boot_jwt!.split('.');
      const claims = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8'));
      claims.verify_hub_key = generateKeyPair().publicKeyB64;
      return JSON.stringify({ ...z, zone_boot_jwt: `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}` });
    }, (e) => e.reason === 'invalid' && /zone boot config/.test(e.message));
    // Another owner key substituted: the documents no longer verify under it.
    await withZoneFile((z) => JSON.stringify({ ...z, owner_key: generateKeyPair().publicKeyB64 }), (e) => e.reason === 'invalid');
    // A device document from elsewhere (same zone name, another owner).
    const intruder = generateKeyPair();
    const foreign = await signDocument({
      typ: 'device', name: 'ood1', zone: 'alice.example.com', did: didDev(device.publicKeyB64), key: device.publicKeyB64,
      role: 'core', iat: now(), exp: now() + 60,
    }, intruder.privateKey);
    await withZoneFile((z) => JSON.stringify({ ...z, device_doc_jwt: foreign }), (e) => e.reason === 'invalid' && /device document/.test(e.message));
    await withZoneFile(() => '{ not json', (e) => /not valid JSON/.test(e.message));
    await withZoneFile((z) => JSON.stringify({ ...z, zone_boot_jwt: undefined }), (e) => /malformed/.test(e.message));
  });

  it('detects a device key file that does not match the device document', async () => {
    const keyPath = join(etc, IDENTITY_FILES.deviceKey);
    const original = readFileSync(keyPath, 'utf8');
    try {
      saveKeyFile(keyPath, generateKeyPair());
      await rejectsWith(loadNodeIdentity(etc), DocumentError, (e) => e.reason === 'mismatch' && /device key/.test(e.message));
    } finally {
      writeFileSync(keyPath, original);
    }
  });
});

describe('token verifier cache', () => {
  it('answers a repeated token from cache but still expires it', async () => {
    const hub = generateKeyPair();
    const verify = createTokenVerifier(() => ({ verifyHubKey: hub.publicKey, device: () => undefined }));
    // Two seconds: `exp` is whole seconds from a whole-second `iat`, so a one-second token signed late in a second has
    // (as a loaded CI machine showed) already expired by the first verify.
    const token = await signAccessToken({ typ: 'session', sub: 'alice', app: 'control-panel', sid: 's', jti: 'j' }, hub.privateKey, 2, VERIFY_HUB_KID);
    assert.equal((await verify(token)).userId, 'alice');
    const { expiresAt } = await verify(token);
    await new Promise((r) => setTimeout(r, expiresAt * 1000 - Date.now() + 50));
    await assert.rejects(verify(token), { code: 'TOKEN_EXPIRED' });
    const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await assert.rejects(verify(forged), { code: 'UNAUTHENTICATED' });
  });
});
