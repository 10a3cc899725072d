// Adding and removing devices (docs/devices.md). An admin asks for an offer; the zone signs it with the enrolment key
// the owner delegated in the boot config and keeps only a hash of its secret; the new device presents the secret
// once, through the tunnel port, and receives its device document. Removal revokes the device's key for good.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { verifyHubApi } from '../../lib/api/verify-hub.ts';
import {
  DOCUMENT_LIFETIME_SEC, type DeviceDoc, type DeviceRole, type EnrolOffer, type EnrolPeer, OFFER_PREFIX, type ZoneBootConfig,
  signDocument, verifyZoneDeviceDoc,
} from '../../lib/identity/documents.ts';
import { deviceReport, revokedKeysOf } from '../../lib/identity/device-directory.ts';
import { JwtError, verifyJwt } from '../../lib/identity/jwt.ts';
import { type KeyPair, didDev, publicKeyFromB64 } from '../../lib/identity/keys.ts';
import { type CallContext, type Handlers, KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { type KvStore, type KvTxOp, listAll } from './kv.ts';
import { type Clock, RateLimiter } from '../../lib/rate-limiter.ts';

type DeviceMethods = Pick<typeof verifyHubApi.methods, 'device_offer' | 'device_enrol' | 'device_list' | 'device_remove'>;

const OFFER_KEY = (id: string) => `system/enrol/offers/${id}`;
const offerRecordSchema = z.object({
  secret_sha256: z.string(),
  role: z.string(),
  name: z.string().nullable(),
  exp: z.number().int(),
  created_by: z.string(),
});
type OfferRecord = z.infer<typeof offerRecordSchema>;

const proofClaims = z.object({ typ: z.literal('enrol-proof'), offer: z.string(), exp: z.number().int() });

/** Enrolment attempts per client address: each costs a signature check and a store round trip. */
export const ENROL_RATE = { capacity: 10, refillMs: 6_000 };
/** A device whose last report is older than this is offline (the scheduler's dead-node window). */
const ONLINE_WINDOW_MS = 90_000;

export interface DeviceAdminOptions {
  kv: KvStore;
  boot: ZoneBootConfig;
  bootJwt: string;
  ownerDocJwt: string | null;
  /** The device this verify-hub runs on: never removable through itself. */
  self: DeviceDoc;
  /** The enrolment key's private half; null on a device without it (offers and enrolment are then refused). */
  enrolKey: KeyPair | null;
  /** PEM of the zone keys handed to a joining core device. */
  coreKeys(): { verify_hub_key: string; enrol_key: string } | null;
  /** Core devices a new device can reach now (name, key, tunnel address). */
  peers(): Promise<EnrolPeer[]>;
  authorizeAdmin(ctx: CallContext, resource: string, action: string, sudo: boolean): Promise<Principal>;
  /** Why removing this device would cost the zone's etcd cluster its quorum, or null when it would not. */
  quorumProblem?(name: string): Promise<string | null>;
  /** The device holding the zone's store when it is on SQLite; null on etcd. */
  storeHolder?(): Promise<string | null>;
  /** Ends the sessions opened with the removed device's key. */
  revokeSessions?(did: string): Promise<number>;
  audit(e: { action: string; actor: string; target: string; ip?: string; reason?: string }): void;
  now?: Clock;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

interface ListedDevice {
  doc: DeviceDoc;
  info: z.infer<typeof deviceReport> | null;
}

export class DeviceAdmin {
  private readonly now: Clock;
  private readonly limiter: RateLimiter;

  constructor(private readonly opts: DeviceAdminOptions) {
    this.now = opts.now ?? Date.now;
    this.limiter = new RateLimiter({ ...ENROL_RATE, now: this.now });
  }

  private nowSec(): number {
    return Math.floor(this.now() / 1000);
  }

  private enrolKey(): KeyPair {
    if (!this.opts.enrolKey) {
      throw new KrpcError('FAILED_PRECONDITION', `device ${this.opts.self.name} does not hold the zone enrolment key; add devices through a core device that does`);
    }
    return this.opts.enrolKey;
  }

  /** Verified, unrevoked device documents of this zone, with each device's last report. */
  private async devices(): Promise<ListedDevice[]> {
    const entries = await listAll(this.opts.kv, 'devices/');
    const byKey = new Map(entries.map((e) => [e.key, e.value]));
    const out: ListedDevice[] = [];
    for (const e of entries) {
      const m = /^devices\/([^/]+)\/doc$/.exec(e.key);
      if (!m) continue;
      let doc: DeviceDoc;
      try {
        doc = await verifyZoneDeviceDoc(e.value.trim(), this.opts.boot);
      } catch {
        continue;
      }
      const revoked = revokedKeysOf(byKey.get(`devices/${m[1]}/revoked`));
      if (doc.name !== m[1] || revoked === null || revoked.has(doc.key)) continue;
      let info: ListedDevice['info'] = null;
      try {
        const parsed = deviceReport.safeParse(JSON.parse(byKey.get(`devices/${m[1]}/info`) ?? 'null'));
        // A report of another shape is as good as none: one bad record must not break the listing of every device.
        info = parsed.success ? parsed.data : null;
      } catch {
        info = null;
      }
      out.push({ doc, info });
    }
    return out;
  }

  private async offer(p: { role: DeviceRole; name?: string; ttl_sec: number }, ctx: CallContext) {
    // A kernel service token passes only from a core device (RBAC's device side): an offer, a core one above all,
    // which hands over the zone's unrotatable verify-hub and enrolment keys, is no other device's to make.
    const actor = await this.opts.authorizeAdmin(ctx, `obj://config/devices/${p.name ?? '*'}/doc`, 'create', true);
    const enrolKey = this.enrolKey();
    if (p.name !== undefined && (await this.opts.kv.get({ key: `devices/${p.name}/doc` })).value !== null) {
      throw new KrpcError('ALREADY_EXISTS', `a device named "${p.name}" is already in the zone; choose another name or remove it first`);
    }
    const peers = await this.opts.peers();
    if (peers.length === 0) throw new KrpcError('UNAVAILABLE', 'no core device has reported an address yet, so a new device could not reach the zone; try again in a minute');
    const iat = this.nowSec();
    const offer: EnrolOffer = {
      typ: 'enrol-offer',
      zone: this.opts.boot.zone,
      owner_key: this.opts.boot.owner_key,
      enrol_key: this.opts.boot.enrol_key,
      id: randomBytes(16).toString('base64url'),
      secret: randomBytes(32).toString('base64url'),
      role: p.role,
      ...(p.name !== undefined ? { name: p.name } : {}),
      peers,
      iat,
      exp: iat + p.ttl_sec,
    };
    const record: OfferRecord = {
      secret_sha256: sha256(offer.secret).toString('base64url'),
      role: p.role,
      name: p.name ?? null,
      exp: offer.exp,
      created_by: actor.userId,
    };
    await this.opts.kv.set({ key: OFFER_KEY(offer.id), value: JSON.stringify(record), expect_revision: 0 });
    const code = OFFER_PREFIX + (await signDocument(offer, enrolKey.privateKey));
    this.opts.audit({ action: 'offer', actor: actor.userId, target: p.name ?? `(any name, role ${p.role})`, ip: ctx.remoteAddress, reason: `offer ${offer.id}, expires ${new Date(offer.exp * 1000).toISOString()}` });
    return {
      id: offer.id,
      code,
      qr_payload: `buckyos://join?offer=${encodeURIComponent(code)}`,
      role: p.role,
      name: p.name ?? null,
      expires_at: offer.exp,
    };
  }

  private async enrol(p: { offer_id: string; secret: string; device_name: string; device_key: string; proof: string }, ctx: CallContext) {
    const wait = this.limiter.take(ctx.remoteAddress);
    if (wait > 0) throw new KrpcError('RATE_LIMITED', `too many enrolment attempts from this address; retry in ${Math.ceil(wait / 1000)} s`, { retry_after_ms: wait });
    const enrolKey = this.enrolKey();
    const refused = new KrpcError('UNAUTHENTICATED', 'unknown, used or expired enrolment offer, or a wrong secret: ask an admin for a new one');
    const stored = await this.opts.kv.get({ key: OFFER_KEY(p.offer_id) });
    if (stored.value === null) throw refused;
    let rec;
    try {
      rec = offerRecordSchema.safeParse(JSON.parse(stored.value));
    } catch {
      throw refused;
    }
    if (!rec.success) throw refused;
    const given = sha256(p.secret);
    const want = Buffer.from(rec.data.secret_sha256, 'base64url');
    if (want.length !== given.length || !timingSafeEqual(want, given)) throw refused;
    if (rec.data.exp < this.nowSec()) {
      await this.opts.kv.delete({ key: OFFER_KEY(p.offer_id), expect_revision: stored.revision }).catch(() => undefined);
      throw refused;
    }
    if (rec.data.name !== null && rec.data.name !== p.device_name) {
      throw new KrpcError('INVALID_PARAMS', `this offer is for a device named "${rec.data.name}", not "${p.device_name}"`);
    }
    let publicKey;
    try {
      publicKey = publicKeyFromB64(p.device_key);
    } catch {
      throw new KrpcError('INVALID_PARAMS', 'device_key is not a canonical base64url Ed25519 public key');
    }
    try {
      const claims = proofClaims.parse(await verifyJwt(p.proof, publicKey));
      if (claims.offer !== p.offer_id) throw new Error('names another offer');
    } catch (e) {
      const why = e instanceof JwtError && e.reason === 'expired' ? 'has expired' : 'does not verify with device_key';
      throw new KrpcError('INVALID_PARAMS', `proof ${why}: sign {typ:"enrol-proof", offer, exp} with the device key`);
    }
    const devices = await this.devices();
    if (devices.some((d) => d.doc.key === p.device_key)) throw new KrpcError('INVALID_PARAMS', 'device_key already belongs to a device of this zone');
    const listed = await listAll(this.opts.kv, 'devices/');
    if (listed.some((e) => e.key.endsWith('/revoked') && revokedKeysOf(e.value)?.has(p.device_key) !== false)) {
      throw new KrpcError('INVALID_PARAMS', 'device_key was revoked when a device was removed; generate a new key');
    }
    const iat = this.nowSec();
    const doc: DeviceDoc = {
      typ: 'device',
      name: p.device_name,
      zone: this.opts.boot.zone,
      did: didDev(p.device_key),
      key: p.device_key,
      role: rec.data.role as DeviceRole,
      iat,
      exp: iat + DOCUMENT_LIFETIME_SEC,
    };
    const docJwt = await signDocument(doc, enrolKey.privateKey);
    const docKey = `devices/${p.device_name}/doc`;
    const tx = await this.opts.kv.exec_tx({
      compares: [{ key: OFFER_KEY(p.offer_id), revision: stored.revision }, { key: docKey, revision: 0 }],
      ops: [{ op: 'delete', key: OFFER_KEY(p.offer_id) }, { op: 'create', key: docKey, value: docJwt }],
    });
    if (!tx.succeeded) {
      if (tx.conflicts.includes(docKey)) throw new KrpcError('ALREADY_EXISTS', `a device named "${p.device_name}" is already in the zone; choose another name`);
      throw refused;
    }
    this.opts.audit({ action: 'enrol', actor: rec.data.created_by, target: p.device_name, ip: ctx.remoteAddress, reason: `role ${doc.role}, ${doc.did}, offer ${p.offer_id}` });
    return {
      owner_key: this.opts.boot.owner_key,
      zone_boot_jwt: this.opts.bootJwt,
      owner_doc_jwt: this.opts.ownerDocJwt,
      device_doc_jwt: docJwt,
      peers: await this.opts.peers(),
      core_keys: doc.role === 'core' ? this.opts.coreKeys() : null,
    };
  }

  private async list(ctx: CallContext) {
    await this.opts.authorizeAdmin(ctx, 'obj://config/devices/*/doc', 'read', false);
    const now = this.now();
    return {
      devices: (await this.devices()).map(({ doc, info }) => {
        const seen = typeof info?.reported_at === 'number' ? info.reported_at : null;
        return {
          name: doc.name,
          role: doc.role,
          did: doc.did,
          state: seen === null ? ('unknown' as const) : now - seen <= ONLINE_WINDOW_MS ? ('online' as const) : ('offline' as const),
          addresses: (info?.addresses ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address),
          last_seen: seen === null ? null : Math.floor(seen / 1000),
          current: doc.name === this.opts.self.name,
        };
      }),
    };
  }

  private async remove(p: { name: string; force: boolean; ignore_quorum: boolean }, ctx: CallContext) {
    const actor = await this.opts.authorizeAdmin(ctx, `obj://config/devices/${p.name}/doc`, 'delete', true);
    if (p.name === this.opts.self.name) {
      throw new KrpcError('FAILED_PRECONDITION', `${p.name} is the device answering this call; remove it through another core device`);
    }
    const devices = await this.devices();
    const target = devices.find((d) => d.doc.name === p.name);
    if (!target) throw new KrpcError('NOT_FOUND', `no device named "${p.name}" in this zone`);
    if (target.doc.role === 'core' && devices.filter((d) => d.doc.role === 'core').length <= 1) {
      throw new KrpcError('FAILED_PRECONDITION', `${p.name} is the zone's last core device`);
    }
    if ((await this.opts.storeHolder?.()) === p.name) {
      throw new KrpcError('FAILED_PRECONDITION', `${p.name} holds the zone's store (SQLite), which every device reads its configuration from; move the store off it first (buckyos zone move)`);
    }
    const problem = await this.opts.quorumProblem?.(p.name);
    if (problem && !p.ignore_quorum) throw new KrpcError('FAILED_PRECONDITION', `${problem}; bring a member back first, or remove it ignoring the quorum and accept that writes stop`);
    // A core device holds the zone's verify-hub and enrolment keys, which cannot be rotated yet: removed, it could
    // still sign tokens. Removing it is allowed only when the admin says they know (a lost or destroyed device).
    if (target.doc.role === 'core' && !p.force) {
      throw new KrpcError('FAILED_PRECONDITION', `${p.name} is a core device and holds the zone's signing keys, which this version cannot rotate: removing it does not take those keys away. Remove it with force only if the device is lost or destroyed`);
    }
    const revokedKey = `devices/${p.name}/revoked`;
    const revoked = await this.opts.kv.get({ key: revokedKey });
    const keys = revokedKeysOf(revoked.value);
    if (keys === null) throw new KrpcError('FAILED_PRECONDITION', `${revokedKey} is unreadable; it is not overwritten, so no revocation is lost: repair it by hand`);
    const ops: KvTxOp[] = [{ op: 'put', key: revokedKey, value: JSON.stringify([...new Set([...keys, target.doc.key])]) }];
    for (const e of await listAll(this.opts.kv, `devices/${p.name}/`, { keysOnly: true })) if (e.key !== revokedKey) ops.push({ op: 'delete', key: e.key });
    for (const e of await listAll(this.opts.kv, 'services/', { keysOnly: true })) if (e.key.endsWith(`/instances/${p.name}`)) ops.push({ op: 'delete', key: e.key });
    // The revocation goes first and alone when there is more than a transaction holds: once it is in, the device is
    // out everywhere, and what remains is bookkeeping a retry (or the scheduler) finishes.
    const tx = await this.opts.kv.exec_tx({ compares: [{ key: revokedKey, revision: revoked.revision }], ops: ops.slice(0, 128) });
    if (!tx.succeeded) throw new KrpcError('CONFLICT', `device ${p.name} changed during removal; try again`);
    for (let i = 128; i < ops.length; i += 128) await this.opts.kv.exec_tx({ ops: ops.slice(i, i + 128) });
    const sessions = (await this.opts.revokeSessions?.(target.doc.did)) ?? 0;
    this.opts.audit({ action: 'remove', actor: actor.userId, target: p.name, ip: ctx.remoteAddress, reason: `revoked ${target.doc.did}; ${sessions} session(s) opened with its key ended` });
    return { name: p.name, did: target.doc.did, deleted_keys: ops.length - 1 };
  }

  handlers(): Handlers<DeviceMethods> {
    return {
      device_offer: (p, ctx) => this.offer(p, ctx),
      device_enrol: (p, ctx) => this.enrol(p, ctx),
      device_list: (_p, ctx) => this.list(ctx),
      device_remove: (p, ctx) => this.remove(p, ctx),
    };
  }
}
