// Device enrolment and removal on the in-memory store: offers are single-use, expire, fix a name and role if asked,
// and are refused when tampered with; enrolment needs proof of the device key; removal revokes the key for good.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, type ZoneBootConfig, openEnrolOffer, signDocument, verifyEnrolOffer, verifyZoneDeviceDoc,
} from '../../lib/identity/documents.ts';
import { DeviceDirectory } from '../../lib/identity/device-directory.ts';
import { signJwt } from '../../lib/identity/jwt.ts';
import { type KeyPair, didDev, generateKeyPair } from '../../lib/identity/keys.ts';
import { type CallContext, KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { DeviceAdmin } from './devices.ts';
import { MemoryKv } from './kv.ts';

const ZONE = 'alice.example.com';

async function setup(opts: { enrolKey?: boolean; quorumProblem?: (name: string) => Promise<string | null>; storeHolder?: () => Promise<string | null> } = {}) {
  let t = Date.now();
  const owner = generateKeyPair();
  const enrol = generateKeyPair();
  const iat = Math.floor(t / 1000);
  const boot: ZoneBootConfig = {
    typ: 'zone-boot', zone: ZONE, owner: 'alice', owner_key: owner.publicKeyB64, verify_hub_key: generateKeyPair().publicKeyB64,
    enrol_key: enrol.publicKeyB64, core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat, exp: iat + DOCUMENT_LIFETIME_SEC,
  };
  const selfKey = generateKeyPair();
  const self: DeviceDoc = { typ: 'device', name: 'ood1', zone: ZONE, did: didDev(selfKey.publicKeyB64), key: selfKey.publicKeyB64, role: 'core', iat, exp: boot.exp };
  const kv = new MemoryKv();
  await kv.set({ key: 'devices/ood1/doc', value: await signDocument(self, owner.privateKey) });
  const audits: string[] = [];
  let sudo = true;
  const actor: Principal = { userId: 'alice', appId: 'buckyos-cli', kind: 'sudo', expiresAt: iat + 300 };
  const admin = new DeviceAdmin({
    kv,
    boot,
    bootJwt: await signDocument(boot, owner.privateKey),
    ownerDocJwt: null,
    self,
    enrolKey: opts.enrolKey === false ? null : enrol,
    coreKeys: () => ({ verify_hub_key: 'VH-PEM', enrol_key: 'ENROL-PEM' }),
    peers: async () => [{ name: 'ood1', key: selfKey.publicKeyB64, address: '10.0.0.1:2980' }],
    authorizeAdmin: async (_ctx, resource, action, needSudo) => {
      if (needSudo && !sudo) throw new KrpcError('SUDO_REQUIRED', `${action} on ${resource} needs sudo`);
      return actor;
    },
    audit: (e) => void audits.push(`${e.action} ${e.target}`),
    quorumProblem: opts.quorumProblem,
    storeHolder: opts.storeHolder,
    now: () => t,
  });
  const h = admin.handlers();
  const ctx = (ip = '10.0.0.9'): CallContext => ({ principal: null, token: null, trace: 't', seq: 0, remoteAddress: ip });
  const enrolWith = async (code: string, name: string, key: KeyPair = generateKeyPair(), ip?: string) => {
    const { offer } = await openEnrolOffer(code);
    const proof = await signJwt({ typ: 'enrol-proof', offer: offer.id }, key.privateKey, { expiresInSec: 300 });
    return h.device_enrol({ offer_id: offer.id, secret: offer.secret, device_name: name, device_key: key.publicKeyB64, proof }, ctx(ip));
  };
  return {
    h, kv, boot, enrol, owner, ctx, enrolWith, audits,
    advance: (ms: number) => (t += ms),
    setSudo: (v: boolean) => (sudo = v),
  };
}

/** The devices a process's directory trusts after listing the store. */
async function listedDevices(s: { kv: MemoryKv; boot: ZoneBootConfig }): Promise<string[]> {
  const kv = s.kv;
  const config = {
    list: async (p: { prefix: string }) => ({ ...(await kv.list({ prefix: p.prefix, limit: 10_000 })), revision: 1 }),
    watch: () => new Promise<never>(() => undefined),
  };
  const directory = new DeviceDirectory({ config: config as never, boot: s.boot });
  await directory.follow();
  directory.close();
  return directory.list().map((d) => d.doc.name);
}

async function code(p: unknown): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof KrpcError, String(e));
    return e.code;
  }
}

describe('device enrolment', () => {
  it('an offer signed by the enrolment key enrols one device, once, with the role it names', async () => {
    const s = await setup();
    const o = await s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx());
    assert.ok(o.code.startsWith('bkjoin1.'));
    assert.equal(o.qr_payload, `buckyos://join?offer=${encodeURIComponent(o.code)}`);
    const { jwt, offer } = await openEnrolOffer(o.qr_payload);
    assert.equal((await verifyEnrolOffer(jwt, s.enrol.publicKey)).id, o.id);
    assert.equal(offer.peers[0]!.address, '10.0.0.1:2980');
    const parts = o.code.split('.');
    const altered = { ...offer, role: 'core' };
    const forged = [parts[0], parts[1], Buffer.from(JSON.stringify(altered)).toString('base64url'), parts[3]].join('.');
    await assert.rejects(openEnrolOffer(forged), /invalid signature/, 'an altered code is refused before its secret is used');
    await assert.rejects(openEnrolOffer('bkjoin1.garbage'), /not a join code/);
    const stored = await s.kv.get({ key: `system/enrol/offers/${o.id}` });
    assert.ok(stored.value && !stored.value.includes(offer.secret), 'the zone keeps a hash of the secret, not the secret');

    const key = generateKeyPair();
    const r = await s.enrolWith(o.code, 'nas2', key);
    const doc = await verifyZoneDeviceDoc(r.device_doc_jwt, s.boot);
    assert.deepEqual([doc.name, doc.role, doc.key], ['nas2', 'storage', key.publicKeyB64]);
    assert.equal(r.core_keys, null, 'only a core device receives the zone keys');
    assert.equal((await s.kv.get({ key: 'devices/nas2/doc' })).value, r.device_doc_jwt);
    assert.equal(await code(s.enrolWith(o.code, 'nas3')), 'UNAUTHENTICATED', 'spent');
    assert.deepEqual(s.audits, ['offer (any name, role storage)', 'enrol nas2']);
  });

  it('refuses an expired offer, a wrong secret, another name than the one fixed, and a bad proof', async () => {
    const s = await setup();
    const fixed = await s.h.device_offer({ role: 'core', name: 'ood2', ttl_sec: 60 }, s.ctx());
    assert.equal(await code(s.enrolWith(fixed.code, 'other')), 'INVALID_PARAMS');
    const { offer } = await openEnrolOffer(fixed.code);
    const key = generateKeyPair();
    const proof = await signJwt({ typ: 'enrol-proof', offer: offer.id }, key.privateKey, { expiresInSec: 300 });
    const wrongSecret = { offer_id: offer.id, secret: 'B'.repeat(43), device_name: 'ood2', device_key: key.publicKeyB64, proof };
    assert.equal(await code(s.h.device_enrol(wrongSecret, s.ctx())), 'UNAUTHENTICATED');
    const strangerProof = await signJwt({ typ: 'enrol-proof', offer: offer.id }, generateKeyPair().privateKey, { expiresInSec: 300 });
    assert.equal(await code(s.h.device_enrol({ ...wrongSecret, secret: offer.secret, proof: strangerProof }, s.ctx())), 'INVALID_PARAMS');
    const core = await s.enrolWith(fixed.code, 'ood2');
    assert.deepEqual(core.core_keys, { verify_hub_key: 'VH-PEM', enrol_key: 'ENROL-PEM' });

    const late = await s.h.device_offer({ role: 'portable', ttl_sec: 60 }, s.ctx());
    s.advance(61_000);
    assert.equal(await code(s.enrolWith(late.code, 'pn1')), 'UNAUTHENTICATED');
  });

  it('a taken name is ALREADY_EXISTS and the offer stays usable; enrolment is rate-limited per address', async () => {
    const s = await setup();
    const o = await s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx());
    assert.equal(await code(s.enrolWith(o.code, 'ood1')), 'ALREADY_EXISTS');
    assert.equal(await code(s.enrolWith(o.code, 'nas2')), 'ok');
    assert.equal(await code(s.h.device_offer({ role: 'storage', name: 'nas2', ttl_sec: 600 }, s.ctx())), 'ALREADY_EXISTS');
    const results = [];
    for (let i = 0; i < 12; i++) results.push(await code(s.enrolWith(o.code, `x${i}x`, generateKeyPair(), '10.9.9.9')));
    assert.ok(results.includes('RATE_LIMITED'));
  });

  it('offers need sudo, and a device without the enrolment key cannot issue or accept them', async () => {
    const s = await setup();
    s.setSudo(false);
    assert.equal(await code(s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx())), 'SUDO_REQUIRED');
    const none = await setup({ enrolKey: false });
    assert.equal(await code(none.h.device_offer({ role: 'storage', ttl_sec: 600 }, none.ctx())), 'FAILED_PRECONDITION');
  });
});

describe('device listing', () => {
  it('lists every device when one reports in a shape of its own, as if it had not reported', async () => {
    const s = await setup();
    const o = await s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx());
    await s.enrolWith(o.code, 'nas2', generateKeyPair());
    for (const bad of ['{"addresses":{}}', '[null]', '{"reported_at":"soon","addresses":[null]}', 'not json']) {
      await s.kv.set({ key: 'devices/nas2/info', value: bad });
      const listed = (await s.h.device_list({}, s.ctx())).devices.find((d) => d.name === 'nas2');
      assert.deepEqual([listed?.state, listed?.addresses, listed?.last_seen], ['unknown', [], null], bad);
    }
    await s.kv.set({ key: 'devices/nas2/info', value: JSON.stringify({ reported_at: Date.now(), addresses: [{ family: 'IPv4', address: '192.168.1.9' }] }) });
    const good = (await s.h.device_list({}, s.ctx())).devices.find((d) => d.name === 'nas2');
    assert.deepEqual([good?.state, good?.addresses], ['online', ['192.168.1.9']]);
  });
});

describe('device removal', () => {
  it('revokes the key: the document goes, cannot be written back, and the directory drops the device', async () => {
    const s = await setup();
    const o = await s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx());
    const key = generateKeyPair();
    const r = await s.enrolWith(o.code, 'nas2', key);
    await s.kv.set({ key: 'devices/nas2/info', value: '{"reported_at":1}' });
    await s.kv.set({ key: 'services/gateway/instances/nas2', value: '{}' });
    assert.ok((await listedDevices(s)).includes('nas2'));

    const out = await s.h.device_remove({ name: 'nas2', force: false, ignore_quorum: false }, s.ctx());
    assert.equal(out.did, didDev(key.publicKeyB64));
    assert.equal((await s.kv.get({ key: 'devices/nas2/doc' })).value, null);
    assert.equal((await s.kv.get({ key: 'services/gateway/instances/nas2' })).value, null);
    // Written back by hand, the old document is still refused.
    await s.kv.set({ key: 'devices/nas2/doc', value: r.device_doc_jwt });
    assert.deepEqual((await s.h.device_list({}, s.ctx())).devices.map((d) => d.name), ['ood1']);
    assert.deepEqual(await listedDevices(s), ['ood1'], 'every process\'s directory refuses it too');
    const again = await s.h.device_offer({ role: 'storage', ttl_sec: 600 }, s.ctx());
    assert.equal(await code(s.enrolWith(again.code, 'nas9', key)), 'INVALID_PARAMS', 'a revoked key cannot enrol again');
  });

  it('refuses removing an etcd member that would cost the cluster its quorum unless told to ignore it, which force is not', async () => {
    const s = await setup({ quorumProblem: async (name) => (name === 'ood2' ? 'removing ood2 would leave 1 healthy etcd member(s) of 2, below the quorum of 2' : null) });
    const o = await s.h.device_offer({ role: 'core', ttl_sec: 600 }, s.ctx());
    await s.enrolWith(o.code, 'ood2');
    for (const force of [false, true]) {
      await assert.rejects(Promise.resolve(s.h.device_remove({ name: 'ood2', force, ignore_quorum: false }, s.ctx())), /below the quorum of 2; bring a member back first/);
    }
    assert.equal(await code(s.h.device_remove({ name: 'ood2', force: false, ignore_quorum: true }, s.ctx())), 'FAILED_PRECONDITION', 'a core device still needs force');
    assert.equal((await s.h.device_remove({ name: 'ood2', force: true, ignore_quorum: true }, s.ctx())).name, 'ood2');
  });

  it('refuses removing the answering device, an unknown one, the last core device, or the one holding the SQLite store', async () => {
    const s = await setup({ storeHolder: async () => 'ood2' });
    assert.equal(await code(s.h.device_remove({ name: 'ood1', force: false, ignore_quorum: false }, s.ctx())), 'FAILED_PRECONDITION');
    assert.equal(await code(s.h.device_remove({ name: 'ghost', force: false, ignore_quorum: false }, s.ctx())), 'NOT_FOUND');
    const o = await s.h.device_offer({ role: 'core', ttl_sec: 600 }, s.ctx());
    await s.enrolWith(o.code, 'ood2');
    await assert.rejects(Promise.resolve(s.h.device_remove({ name: 'ood2', force: true, ignore_quorum: true }, s.ctx())), /ood2 holds the zone's store \(SQLite\)/);
    assert.ok((await s.h.device_list({}, s.ctx())).devices.some((d) => d.name === 'ood2'), 'nothing was removed');
  });
});
