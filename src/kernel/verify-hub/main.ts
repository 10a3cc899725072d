// The verify-hub process: loads the zone's token-signing key, keeps users and sessions in system-config, imports the
// owner's initial password on the first start, and serves kRPC on its port.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import { verifyDeviceDoc } from '../../lib/identity/documents.ts';
import { didDev, loadKeyFile, publicKeyFromB64 } from '../../lib/identity/keys.ts';
import { IDENTITY_FILES, ownerAdminFileSchema } from '../../lib/identity/node-identity.ts';
import { createHttpApp, createKrpcEndpoint, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import { type AuditFn, type CheckFn, VerifyHub } from './hub.ts';
import { type KvStore, listAll } from './kv.ts';
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

/** Resolves did:dev keys of this zone's devices: this node's own, and every owner-signed device document in
 * system-config. */
function zoneDeviceKeys(rt: KernelRuntime, kv: KvStore): (did: string) => Promise<KeyObject | undefined> {
  const ownDid = didDev(rt.identity.deviceKey.publicKeyB64);
  return async (did) => {
    if (did === ownDid) return rt.identity.deviceKey.publicKey;
    for (const e of await listAll(kv, 'devices/')) {
      if (!DEVICE_DOC_KEY.test(e.key)) continue;
      try {
        const doc = await verifyDeviceDoc(e.value.trim(), rt.identity.ownerKey);
        if (doc.did === did && doc.zone === rt.identity.boot.zone) return publicKeyFromB64(doc.key);
      } catch (err) {
        rt.log.warn({ key: e.key, err: (err as Error).message }, 'ignoring device document that does not verify');
      }
    }
    return undefined;
  };
}

export async function runVerifyHubService(rt: KernelRuntime, port: number, deps: VerifyHubDeps): Promise<{ port: number; close(): Promise<void> }> {
  const kv: KvStore = rt.localClient(systemConfigApi, rt.config.ports.system_config);
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
    deviceKey: zoneDeviceKeys(rt, kv),
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

  const endpoint = createKrpcEndpoint(verifyHubApi, hub.handlers(), { authenticate: hub.authenticate, logger: rt.log });
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
