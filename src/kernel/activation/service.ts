// The activation service (DESIGN §3, docs/identity.md): what an unactivated device runs on its LAN port until the
// owner makes it the first device of a zone. The device generates its own keys; the owner signs; the device checks
// every signature and every binding to the keys it generated before writing anything, and writes zone.json last,
// because that file's presence is what "activated" means.
import { type KeyObject, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pkg from '../../../package.json' with { type: 'json' };
import { type DeviceInfo, activationApi, adminPasswordProblem } from '../../lib/api/activation.ts';
import type { NodePaths } from '../../lib/config/node-config.ts';
import {
  DEVICE_NAME, DocumentError, verifyDeviceDoc, verifyOwnerDoc, verifyZoneBootConfig,
} from '../../lib/identity/documents.ts';
import {
  type KeyPair, didDev, didWeb, generateKeyPair, privateKeyToPem, publicKeyFromB64, writeFileAtomic,
} from '../../lib/identity/keys.ts';
import {
  IDENTITY_FILES, type OwnerAdminFile, isActivated, loadNodeIdentity, writeZoneFile,
} from '../../lib/identity/node-identity.ts';
import { KrpcError, createHttpApp, createKrpcEndpoint, sendJson } from '../../lib/krpc/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { collectDeviceInfo } from '../../lib/sysinfo.ts';
import { UiFiles, sameOrigin, setUiSecurityHeaders } from '../../lib/ui-files.ts';
import type { Discovery } from './discovery.ts';
import { joinZone } from './join.ts';

/** The built UI (scripts/build-ui.ts), whose activation page this service serves: `dist/ui` of this checkout, from
 * the sources and from dist/ alike. */
export const UI_DIR = fileURLToPath(new URL('../../../dist/ui', import.meta.url));
/** The page of the build that activates a device (src/ui/activation). */
export const ACTIVATION_PAGE = '/activation.html';

export const ATTEMPT_TTL_MS = 10 * 60_000;
/** Pending attempts kept per client address; a new one evicts that address's oldest. An address never evicts
 * another's attempt, so a flood of prepares from elsewhere on the LAN cannot take the owner's away. */
export const MAX_PENDING_PER_ADDRESS = 4;
/** Pending attempts kept in all; beyond it prepare is refused until some expire or one is committed. */
export const MAX_PENDING_ATTEMPTS = 64;
export const PREPARES_PER_MINUTE = 10;
export const COMMITS_PER_MINUTE = 10;
/** 2^15 × 8 × 128 bytes = 32 MiB, about 0.1 s per hash: verify-hub's parameters, so its first login needs no rehash. */
export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1, keylen: 32 } as const;

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, keylen: number, opts: ScryptOptions) => Promise<Buffer>;

// ---- device description ----------------------------------------------------------------------------------------

/** A valid device name from a host name: first label, lower-cased, other characters turned into dashes. */
export function suggestDeviceName(host: string): string {
  let n = (host.split('.')[0] ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-+/, '');
  if (/^[0-9]/.test(n)) n = `dev-${n}`;
  n = n.slice(0, 32).replace(/-+$/, '');
  // "ood1" (owner online device) is the Rust project's name for a zone's first device.
  return DEVICE_NAME.test(n) ? n : 'ood1';
}

// Loop devices (snap and image mounts), RAM disks and network block devices are not disks the owner could use.
const NOT_A_DISK = /^\/dev\/(loop|ram|zram|nbd)\d/;

/** What `GET /device` and `prepare` report: the node's system facts plus what only activation knows. */
export function describeDevice(paths: NodePaths): DeviceInfo {
  const info = collectDeviceInfo();
  return {
    name: suggestDeviceName(info.hostname),
    activated: isActivated(paths.etc),
    version: pkg.version,
    ...info,
    disks: info.disks.filter((d) => !NOT_A_DISK.test(d.device)),
  };
}

// ---- the service ------------------------------------------------------------------------------------------------

interface Attempt {
  id: string;
  /** The client address that prepared it. */
  address: string;
  deviceName: string;
  deviceKey: KeyPair;
  verifyHubKey: KeyPair;
  enrolKey: KeyPair;
  expiresAt: number;
}

export interface ActivationAppOptions {
  paths: NodePaths;
  /** Called once, after a successful commit has been answered; node_daemon then restarts into the zone. */
  onActivated?: () => void;
  logger?: Logger;
  /** The built UI to serve the activation page from; UI_DIR by default. */
  uiDir?: string;
  /** The zone's system UI, which the activation page opens once it answers. */
  ui?: { port: number; probe(): Promise<boolean> };
  /** LAN discovery of other unactivated devices; without it `discover` answers that it is not searching. */
  discovery?: Discovery;
}

function rateLimiter(limit: number, windowMs: number): (key: string) => void {
  const hits = new Map<string, number[]>();
  return (key) => {
    const now = Date.now();
    for (const [k, times] of hits) {
      const fresh = times.filter((t) => now - t < windowMs);
      if (fresh.length) hits.set(k, fresh);
      else hits.delete(k);
    }
    const mine = hits.get(key) ?? [];
    if (mine.length >= limit) {
      const retry = Math.ceil((mine[0]! + windowMs - now) / 1000);
      throw new KrpcError('RATE_LIMITED', `too many activation attempts; try again in ${retry} s`, { retry_after_sec: retry });
    }
    mine.push(now);
    hits.set(key, mine);
  };
}

/** Turns a document refusal into the error the caller must see: a bad signature is not a typo, and vice versa. */
async function checkedDoc<T>(field: string, verify: () => Promise<T>): Promise<T> {
  try {
    return await verify();
  } catch (e) {
    if (!(e instanceof DocumentError)) throw e;
    if (e.reason === 'invalid') throw new KrpcError('UNAUTHENTICATED', `${field}: ${e.message}; it must be an EdDSA JWT signed by owner_key`);
    if (e.reason === 'expired') throw new KrpcError('UNAUTHENTICATED', `${field}: ${e.message}; sign it again`);
    throw new KrpcError('INVALID_PARAMS', `${field}: ${e.message}`);
  }
}

function ownerPublicKey(b64: string): KeyObject {
  try {
    return publicKeyFromB64(b64);
  } catch {
    throw new KrpcError('INVALID_PARAMS', 'owner_key is not a canonical base64url Ed25519 public key');
  }
}

function mustMatch(ok: boolean, message: string): void {
  if (!ok) throw new KrpcError('INVALID_PARAMS', message);
}

async function hashPassword(password: string): Promise<OwnerAdminFile['scrypt']> {
  const salt = randomBytes(16);
  const { N, r, p, keylen } = SCRYPT_PARAMS;
  // NFC, as verify-hub normalises at login: the same password typed on another keyboard must still match.
  const hash = await scrypt(password.normalize('NFC'), salt, keylen, { N, r, p, maxmem: 256 * N * r });
  return { N, r, p, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

export function createActivationApp(opts: ActivationAppOptions): Server {
  const { paths, logger: log } = opts;
  const attempts = new Map<string, Attempt>();
  const limitPrepares = rateLimiter(PREPARES_PER_MINUTE, 60_000);
  const limitCommits = rateLimiter(COMMITS_PER_MINUTE, 60_000);
  let committing = false;
  let activatedZone: string | undefined;

  function refuseIfActivated(): void {
    if (isActivated(paths.etc)) {
      throw new KrpcError('FAILED_PRECONDITION', 'this device is already activated; run `buckyos reset` first');
    }
  }

  function prune(): void {
    const now = Date.now();
    for (const [id, a] of attempts) if (a.expiresAt <= now) attempts.delete(id);
  }

  /** Writes the identity files, zone.json last; on any error removes what it wrote, so a retry starts clean. */
  async function writeIdentity(a: Attempt, files: { ownerKey: string; bootJwt: string; deviceJwt: string; ownerJwt: string; owner: string; password: string }): Promise<void> {
    const hashed = await hashPassword(files.password);
    const zonePath = join(paths.etc, IDENTITY_FILES.zone);
    const written: string[] = [];
    const write = (name: string, data: string): void => {
      const path = join(paths.etc, name);
      writeFileAtomic(path, data, 0o600);
      written.push(path);
    };
    try {
      write(IDENTITY_FILES.deviceKey, privateKeyToPem(a.deviceKey.privateKey));
      write(IDENTITY_FILES.verifyHubKey, privateKeyToPem(a.verifyHubKey.privateKey));
      write(IDENTITY_FILES.enrolKey, privateKeyToPem(a.enrolKey.privateKey));
      const admin: OwnerAdminFile = { user: files.owner, scrypt: hashed, created_at: new Date().toISOString() };
      write(IDENTITY_FILES.ownerAdmin, JSON.stringify(admin, null, 2) + '\n');
      writeZoneFile(paths.etc, {
        owner_key: files.ownerKey,
        zone_boot_jwt: files.bootJwt,
        device_doc_jwt: files.deviceJwt,
        owner_doc_jwt: files.ownerJwt,
        activated_at: new Date().toISOString(),
      });
      written.unshift(zonePath);
      // Every service starts through loadNodeIdentity: prove now that it will, instead of at the next boot.
      await loadNodeIdentity(paths.etc);
    } catch (e) {
      for (const path of written) rmSync(path, { force: true });
      log?.error({ err: e }, 'activation could not write the identity files; rolled back');
      throw new KrpcError('INTERNAL', `could not store the identity files in ${paths.etc}: ${(e as Error).message}`);
    }
  }

  const endpoint = createKrpcEndpoint(
    activationApi,
    {
      prepare: async (p, ctx) => {
        refuseIfActivated();
        const address = ctx.remoteAddress;
        limitPrepares(address);
        prune();
        const mine = [...attempts.values()].filter((a) => a.address === address);
        while (mine.length >= MAX_PENDING_PER_ADDRESS) attempts.delete(mine.shift()!.id);
        if (attempts.size >= MAX_PENDING_ATTEMPTS) {
          throw new KrpcError('RATE_LIMITED', 'too many activation attempts are pending on this device; try again in a few minutes', {
            retry_after_sec: Math.ceil((Math.min(...[...attempts.values()].map((a) => a.expiresAt)) - Date.now()) / 1000),
          });
        }
        const info = describeDevice(paths);
        const a: Attempt = {
          id: randomBytes(16).toString('base64url'),
          address,
          deviceName: p.device_name ?? info.name,
          deviceKey: generateKeyPair(),
          verifyHubKey: generateKeyPair(),
          enrolKey: generateKeyPair(),
          expiresAt: Date.now() + ATTEMPT_TTL_MS,
        };
        attempts.set(a.id, a);
        log?.info({ attempt: a.id, device_name: a.deviceName, address }, 'activation attempt prepared');
        return {
          attempt_id: a.id,
          device_name: a.deviceName,
          device_key: a.deviceKey.publicKeyB64,
          device_did: didDev(a.deviceKey.publicKeyB64),
          verify_hub_key: a.verifyHubKey.publicKeyB64,
          enrol_key: a.enrolKey.publicKeyB64,
          expires_at: Math.floor(a.expiresAt / 1000),
          device_info: info,
        };
      },

      join: async (p, ctx) => {
        refuseIfActivated();
        limitCommits(ctx.remoteAddress);
        if (committing) throw new KrpcError('FAILED_PRECONDITION', 'another activation is being committed on this device');
        committing = true;
        try {
          const joined = await joinZone(paths, p.offer, p.device_name ?? describeDevice(paths).name, log);
          attempts.clear();
          activatedZone = joined.zone;
          log?.info({ zone: joined.zone, device: joined.device.name, role: joined.device.role }, 'device joined the zone');
          if (opts.onActivated) setImmediate(opts.onActivated);
          return { zone: joined.zone, device_name: joined.device.name, device_did: joined.device.did, role: joined.device.role };
        } finally {
          committing = false;
        }
      },

      discover: async () => {
        const d = opts.discovery;
        if (!d || !d.searching() || isActivated(paths.etc)) return { searching: false, devices: [] };
        return { searching: true, devices: d.list() };
      },

      status: async () => {
        const activated = isActivated(paths.etc);
        const ui = opts.ui;
        return {
          activated,
          ...(activatedZone ? { zone: activatedZone } : {}),
          ui_port: ui?.port ?? 0,
          ui_ready: activated && ui ? await ui.probe() : false,
        };
      },

      commit: async (p, ctx) => {
        refuseIfActivated();
        limitCommits(ctx.remoteAddress);
        prune();
        const a = attempts.get(p.attempt_id);
        if (!a) throw new KrpcError('FAILED_PRECONDITION', 'unknown or expired activation attempt; call prepare again');
        if (committing) throw new KrpcError('FAILED_PRECONDITION', 'another activation is being committed on this device');
        committing = true;
        try {
          const ownerKey = ownerPublicKey(p.owner_key);
          const boot = await checkedDoc('zone_boot_jwt', () => verifyZoneBootConfig(p.zone_boot_jwt, ownerKey));
          const device = await checkedDoc('device_doc_jwt', () => verifyDeviceDoc(p.device_doc_jwt, ownerKey));
          const owner = await checkedDoc('owner_doc_jwt', () => verifyOwnerDoc(p.owner_doc_jwt));
          if (owner.key !== p.owner_key) throw new KrpcError('UNAUTHENTICATED', 'owner_doc_jwt: owner document is signed by another key than owner_key');

          mustMatch(boot.owner_key === p.owner_key, 'zone boot config: owner_key differs from the owner_key sent');
          mustMatch(boot.verify_hub_key === a.verifyHubKey.publicKeyB64, 'zone boot config: verify_hub_key is not the key this device prepared for this attempt');
          mustMatch(boot.enrol_key === a.enrolKey.publicKeyB64, 'zone boot config: enrol_key is not the key this device prepared for this attempt');
          mustMatch(boot.core_nodes.includes(a.deviceName), `zone boot config: core_nodes must include this device, "${a.deviceName}"`);
          mustMatch(device.key === a.deviceKey.publicKeyB64, 'device document: key is not the key this device prepared for this attempt');
          mustMatch(device.name === a.deviceName, `device document: name "${device.name}" is not the prepared device name "${a.deviceName}"`);
          mustMatch(device.zone === boot.zone, `device document: zone "${device.zone}" is not the zone "${boot.zone}"`);
          mustMatch(device.role === 'core', `device document: the first device of a zone has role "core", not "${device.role}"`);
          mustMatch(owner.name === boot.owner, `owner document: name "${owner.name}" is not the zone owner "${boot.owner}"`);
          mustMatch(owner.zone === boot.zone, `owner document: zone "${owner.zone}" is not the zone "${boot.zone}"`);
          const weak = adminPasswordProblem(p.admin_password, { user: boot.owner, zone: boot.zone });
          if (weak) throw new KrpcError('INVALID_PARAMS', weak);

          refuseIfActivated();
          await writeIdentity(a, {
            ownerKey: p.owner_key,
            bootJwt: p.zone_boot_jwt,
            deviceJwt: p.device_doc_jwt,
            ownerJwt: p.owner_doc_jwt,
            owner: boot.owner,
            password: p.admin_password,
          });
          attempts.clear();
          activatedZone = boot.zone;
          log?.info({ zone: boot.zone, device: a.deviceName, owner: boot.owner }, 'device activated');
          // After the answer is on its way: the callback typically closes this server.
          if (opts.onActivated) setImmediate(opts.onActivated);
          return { zone: boot.zone, zone_did: didWeb(boot.zone), device_name: a.deviceName, device_did: device.did, owner: boot.owner };
        } finally {
          committing = false;
        }
      },
    },
    { logger: log },
  );

  const files = new UiFiles(opts.uiDir ?? UI_DIR, { page: ACTIVATION_PAGE });
  const server = createHttpApp({
    name: 'activation',
    endpoints: [endpoint],
    routes: {
      'GET /device': (_req, res) => sendJson(res, 200, describeDevice(paths)),
    },
    fallback: async (req, res, url) => {
      if (req.method === 'GET' || req.method === 'HEAD') return files.serve(req, res, url);
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${url.pathname}` } });
    },
    health: () => ({ activated: isActivated(paths.etc) }),
  });
  // The page's headers (CSP, no framing, no sniffing) on every answer, as the zone's UI listener sends them; and, as
  // there, kRPC only from this device's own pages, so a site the owner happens to visit cannot drive activation.
  const [handle] = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    setUiSecurityHeaders(req, res);
    if (req.url?.startsWith('/kapi') && !sameOrigin(req)) {
      const e = new KrpcError('PERMISSION_DENIED', `calls from ${req.headers.origin} are refused: only pages from this device may call it`);
      return sendJson(res, e.httpStatus, { error: e.toJSON() });
    }
    handle!(req, res);
  });
  return server;
}
