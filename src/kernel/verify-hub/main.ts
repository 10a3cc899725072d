// The verify-hub process: loads the zone's token-signing key, keeps users and sessions in system-config, imports the
// owner's initial password on the first start, and serves kRPC on its port.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import type { EnrolPeer } from '../../lib/identity/documents.ts';
import { CONFIG_STORE_KEY, configStoreSchema, parseRecord } from '../../lib/config/store-control.ts';
import { type KeyPair, loadKeyFile, privateKeyToPem } from '../../lib/identity/keys.ts';
import { IDENTITY_FILES, ownerAdminFileSchema } from '../../lib/identity/node-identity.ts';
import { createHttpApp, createKrpcEndpoint, listen } from '../../lib/krpc/index.ts';
import { collectDeviceInfo } from '../../lib/sysinfo.ts';
import type { KernelRuntime } from '../runtime.ts';
import { DeviceAdmin } from './devices.ts';
import { type AuditFn, type CheckFn, VerifyHub } from './hub.ts';
import type { KvStore } from './kv.ts';
import { type PasswordHash, passwordHashSchema } from './password.ts';

export interface VerifyHubDeps {
  /** RBAC check of the acting user and app (the zone's casbin enforcer). */
  check: CheckFn;
  /** Receives security events for the audit stream. */
  audit: AuditFn;
  /** Called once a user is deleted, to remove every RBAC grant of theirs at once. */
  onUserDeleted?: (name: string) => void | Promise<void>;
}

const SWEEP_INTERVAL_MS = 60 * 60_000;
const DEVICE_DOC_KEY = /^devices\/[^/]+\/doc$/;

/** The owner's initial password hash from activation, or null when there is none. Throws on a file that is wrong. */
function readOwnerAdminFile(etcDir: string, owner: string): PasswordHash | null {
  const path = join(etcDir, IDENTITY_FILES.ownerAdmin);
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
  const file = ownerAdminFileSchema.safeParse(raw);
  if (!file.success) throw new Error(`${path} is malformed: ${file.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if (file.data.user !== owner) throw new Error(`${path} is for user "${file.data.user}" but the zone owner is "${owner}"`);
  const hash = passwordHashSchema.safeParse(file.data.scrypt);
  if (!hash.success) throw new Error(`${path}: unusable scrypt hash: ${hash.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return hash.data;
}

/** Core devices a joining device can reach: this one (its own addresses, known at once) and every other core device
 * with a reported address, each at the zone's tunnel port. */
function enrolPeers(rt: KernelRuntime): () => Promise<EnrolPeer[]> {
  const port = rt.config.ports.tunnel;
  const hostPort = (ip: string) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
  return async () => {
    const self = rt.identity.device;
    const own = collectDeviceInfo().addresses.find((a) => a.family === 'IPv4')?.address;
    const peers: EnrolPeer[] = own ? [{ name: self.name, key: self.key, address: hostPort(own) }] : [];
    for (const d of rt.devices().list()) {
      if (d.doc.role !== 'core' || d.doc.name === self.name || !d.addresses[0]) continue;
      peers.push({ name: d.doc.name, key: d.doc.key, address: hostPort(d.addresses[0]) });
    }
    return peers.slice(0, 7);
  };
}

/** Why removing `name` would leave the zone's etcd cluster without a quorum of healthy members, or null. */
async function etcdQuorumProblem(rt: KernelRuntime, name: string): Promise<string | null> {
  const cfg = rt.configClient();
  const store = parseRecord(configStoreSchema, (await cfg.get({ key: CONFIG_STORE_KEY })).value);
  if (store?.backend !== 'etcd' || !store.members.some((m) => m.name === name)) return null;
  const cluster = (await cfg.status({})).cluster;
  if (!cluster) return null;
  const member = cluster.members.find((m) => m.name === name);
  const remaining = cluster.healthy - (member?.healthy ? 1 : 0);
  const quorum = Math.floor((cluster.members.length - 1) / 2) + 1;
  return remaining < quorum ? `removing ${name} would leave ${remaining} healthy etcd member(s) of ${cluster.members.length - 1}, below the quorum of ${quorum}` : null;
}

function loadOptionalKey(path: string): KeyPair | null {
  return existsSync(path) ? loadKeyFile(path) : null;
}

export async function runVerifyHubService(rt: KernelRuntime, port: number, deps: VerifyHubDeps): Promise<{ port: number; close(): Promise<void> }> {
  const kv: KvStore = rt.configClient();
  await rt.devices().follow();
  const keyPath = join(rt.paths.etc, IDENTITY_FILES.verifyHubKey);
  const signing = loadKeyFile(keyPath);
  if (signing.publicKeyB64 !== rt.identity.boot.verify_hub_key) {
    throw new Error(`${keyPath} does not hold the verify-hub key named in the zone boot config`);
  }
  const owner = rt.identity.boot.owner;
  const hub = new VerifyHub({
    kv,
    signingKey: signing.privateKey,
    owner: { name: owner, key: rt.identity.ownerKey },
    device: rt.trustedDevice,
    verifyToken: rt.authenticate,
    check: deps.check,
    audit: deps.audit,
    onUserDeleted: deps.onUserDeleted,
    log: rt.log,
  });
  const initial = readOwnerAdminFile(rt.paths.etc, owner);
  const { imported } = await hub.ensureOwner(initial);
  if (imported) rt.log.info({ owner }, 'imported the owner\'s initial password');
  // Only once system-config holds the owner's credential (imported now, or at a start that stopped before this):
  // a file left behind would bring the initial password back if that record were ever lost.
  if (initial && (await hub.ownerHasPassword())) {
    const path = join(rt.paths.etc, IDENTITY_FILES.ownerAdmin);
    try {
      rmSync(path, { force: true });
      rt.log.info({ owner }, `deleted ${path}: the owner's password is in system-config`);
    } catch (err) {
      // Not worth refusing logins over: the file matters only if the credential record is lost. Every start retries.
      rt.log.error({ path, err: (err as Error).message }, 'could not delete the initial owner password file; delete it by hand');
    }
  }

  const sweep = () =>
    hub.sweep().then(
      (n) => n > 0 && rt.log.info({ deleted: n }, 'deleted expired sessions'),
      (err) => rt.log.error({ err: (err as Error).message }, 'session sweep failed'),
    );
  void sweep();
  const timer = setInterval(() => void sweep(), SWEEP_INTERVAL_MS);
  timer.unref();

  const enrolKeyPath = join(rt.paths.etc, IDENTITY_FILES.enrolKey);
  const enrolKey = loadOptionalKey(enrolKeyPath);
  if (enrolKey && enrolKey.publicKeyB64 !== rt.identity.boot.enrol_key) {
    throw new Error(`${enrolKeyPath} does not hold the enrolment key named in the zone boot config`);
  }
  const devices = new DeviceAdmin({
    kv,
    boot: rt.identity.boot,
    bootJwt: rt.identity.bootJwt,
    ownerDocJwt: rt.identity.ownerDocJwt ?? null,
    self: rt.identity.device,
    enrolKey,
    coreKeys: () => (enrolKey ? { verify_hub_key: privateKeyToPem(signing.privateKey), enrol_key: privateKeyToPem(enrolKey.privateKey) } : null),
    peers: enrolPeers(rt),
    authorizeAdmin: (ctx, resource, action, sudo) => hub.requireAdmin(ctx, resource, action, sudo),
    quorumProblem: (name) => etcdQuorumProblem(rt, name),
    storeHolder: async () => {
      const store = parseRecord(configStoreSchema, (await rt.configClient().get({ key: CONFIG_STORE_KEY })).value);
      return store?.backend === 'sqlite' ? store.primary : null;
    },
    revokeSessions: (did) => hub.revokeDeviceSessions(did),
    audit: (e) => hub.emit({ type: 'device_change', action: e.action, actor: e.actor, target: e.target, ip: e.ip, reason: e.reason }),
  });
  const endpoint = createKrpcEndpoint(verifyHubApi, { ...hub.handlers(), ...devices.handlers() }, { authenticate: hub.authenticate, logger: rt.log });
  const running = await listen(createHttpApp({ name: 'verify-hub', endpoints: [endpoint] }), port, rt.config.service_host);
  rt.log.info({ port: running.port }, 'verify-hub listening');
  return {
    port: running.port,
    close: async () => {
      clearInterval(timer);
      await running.close();
    },
  };
}
