// The zone's devices as every process sees them: the owner- or enrolment-key-signed documents under `devices/<d>/doc`,
// minus the keys listed in `devices/<d>/revoked`, followed by watch so that a removed device stops being trusted
// within moments everywhere (tokens, tunnels), and an added one is trusted as soon as its document is written.
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { systemConfigApi } from '../api/system-config.ts';
import type { Client } from '../krpc/index.ts';
import type { Logger } from '../log/logger.ts';
import { type DeviceDoc, type ZoneBootConfig, verifyZoneDeviceDoc } from './documents.ts';
import { publicKeyFromB64 } from './keys.ts';

const DOC_KEY = /^devices\/([^/]+)\/doc$/;
const INFO_KEY = /^devices\/([^/]+)\/info$/;
const REVOKED_KEY = /^devices\/([^/]+)\/revoked$/;

/** `devices/<d>/revoked`: every key ever removed under that name. Kept when the name is reused, so an old document
 * written back by mistake (or by someone who kept a copy) is still refused. */
export const revokedKeysSchema = z.array(z.string()).max(1024);

/** The revoked keys a `devices/<d>/revoked` value lists: none for an absent value, and null for an unreadable one,
 * which callers treat as "every key under that name is revoked": a damaged list must not un-revoke anything. */
export function revokedKeysOf(value: string | null | undefined): Set<string> | null {
  if (value === null || value === undefined) return new Set();
  try {
    const r = revokedKeysSchema.safeParse(JSON.parse(value));
    return r.success ? new Set(r.data) : null;
  } catch {
    return null;
  }
}

/** What other parts read of the report a node writes in `devices/<d>/info`: when it reported, and the addresses other
 * nodes need to reach it. Any node may write its own report, so it is parsed, never trusted to have this shape. */
export const deviceReport = z.object({
  reported_at: z.number().optional(),
  addresses: z.array(z.object({ family: z.string(), address: z.string() })).default([]),
});

export interface ZoneDevice {
  doc: DeviceDoc;
  publicKey: KeyObject;
  /** Non-loopback IPv4 addresses first, from the device's last report; empty until it reported. */
  addresses: string[];
}

type ConfigClient = Pick<Client<typeof systemConfigApi.methods>, 'list' | 'watch'>;

export interface DeviceDirectoryOptions {
  config: ConfigClient;
  boot: ZoneBootConfig;
  log?: Logger;
}

const LIST_LIMIT = 10_000;
/** An unknown device is looked up again at most this often: a forged did must not turn every call into a listing. */
const MISS_RELIST_MS = 1_000;

export class DeviceDirectory {
  private readonly docs = new Map<string, string>();
  private readonly infos = new Map<string, string[]>();
  private readonly revoked = new Map<string, Set<string> | null>();
  private devices = new Map<string, ZoneDevice>();
  private readonly listeners = new Set<(removed: ZoneDevice[]) => void>();
  private readonly stop = new AbortController();
  private lastList = 0;
  private listing: Promise<void> | null = null;
  private following = false;

  constructor(private readonly opts: DeviceDirectoryOptions) {}

  /** Starts following `devices/` (idempotent); resolves after the first listing, or at once if it fails. */
  async follow(): Promise<void> {
    if (this.following) return;
    this.following = true;
    await this.relist().catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'device listing failed; retrying'));
    void this.watchLoop();
  }

  close(): void {
    this.stop.abort();
  }

  /** Whether a listing has been read: before it, a device missing here may simply not be known yet. */
  get loaded(): boolean {
    return this.lastList > 0;
  }

  /** Called with the devices that stopped being trusted (removed, revoked, or whose document changed key). */
  onRemoved(fn: (removed: ZoneDevice[]) => void): void {
    this.listeners.add(fn);
  }

  byName(name: string): ZoneDevice | undefined {
    return this.devices.get(name);
  }

  byKey(keyB64: string): ZoneDevice | undefined {
    for (const d of this.devices.values()) if (d.doc.key === keyB64) return d;
    return undefined;
  }

  list(): ZoneDevice[] {
    return [...this.devices.values()].sort((a, b) => (a.doc.name < b.doc.name ? -1 : 1));
  }

  /** The device of a did:dev, listing again (rate-limited) when it is not known yet: a device that has just been
   * enrolled may call before the watch delivered its document. */
  async byDid(did: string): Promise<ZoneDevice | undefined> {
    const find = () => [...this.devices.values()].find((d) => d.doc.did === did);
    const known = find();
    if (known) return known;
    // Misses wait for the next listing slot rather than being refused inside it, so a device enrolled a moment ago
    // is found, while any number of unknown dids still cost at most one listing per slot.
    const seen = this.lastList;
    const wait = seen + MISS_RELIST_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (this.lastList === seen) await this.relist().catch(() => undefined);
    return find();
  }

  private relist(): Promise<void> {
    this.listing ??= (async () => {
      try {
        const applied = this.watchBatches;
        const listed = await this.opts.config.list({ prefix: 'devices/', limit: LIST_LIMIT });
        this.lastList = Date.now();
        // A listing lookups asked for may come back after the watch applied changes (a revocation) it may not hold:
        // taking it would trust the removed device again, and the watch, already past that change, would never bring
        // it back. Revisions cannot tell which is newer (a store moved between SQLite and etcd numbers them afresh),
        // so a listing the watch overtook is dropped; the watch goes on from where it is.
        if (this.watchBatches !== applied) return;
        this.docs.clear();
        this.infos.clear();
        this.revoked.clear();
        for (const e of listed.entries) this.take(e.key, e.value);
        this.revision = listed.revision;
        await this.rebuild();
      } finally {
        this.listing = null;
      }
    })();
    return this.listing;
  }

  /** The store revision the maps above reflect. */
  private revision = 0;
  /** Watch answers with changes applied so far: a listing answered after one of them is not taken. */
  private watchBatches = 0;
  /** Rebuilds run one at a time, each from the maps as they are when it starts, so an older one never lands last. */
  private rebuilding: Promise<void> = Promise.resolve();

  private async watchLoop(): Promise<void> {
    let backoff = 500;
    while (!this.stop.signal.aborted) {
      try {
        if (this.revision === 0) await this.relist();
        const w = await this.opts.config.watch({ prefix: 'devices/', after_revision: this.revision, timeout_ms: 25_000 }, { timeoutMs: 35_000 });
        let changed = false;
        for (const ev of w.events) changed = this.take(ev.key, ev.value) || changed;
        if (w.events.length > 0) this.watchBatches++;
        this.revision = w.revision;
        if (changed) await this.rebuild();
        backoff = 500;
      } catch (err) {
        if (this.stop.signal.aborted) return;
        this.opts.log?.warn({ err: (err as Error).message }, 'device watch failed; listing again');
        this.revision = 0;
        await new Promise((r) => setTimeout(r, backoff).unref());
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  /** Records one key's value (null: deleted); whether it matters to trust or addresses. */
  private take(key: string, value: string | null): boolean {
    let m = DOC_KEY.exec(key);
    if (m) {
      if (value === null) this.docs.delete(m[1]!);
      else this.docs.set(m[1]!, value.trim());
      return true;
    }
    m = REVOKED_KEY.exec(key);
    if (m) {
      this.revoked.set(m[1]!, revokedKeysOf(value));
      return true;
    }
    m = INFO_KEY.exec(key);
    if (m) {
      this.infos.set(m[1]!, value === null ? [] : parseAddresses(value));
      const d = this.devices.get(m[1]!);
      if (d) d.addresses = this.infos.get(m[1]!)!;
    }
    return false;
  }

  private rebuild(): Promise<void> {
    this.rebuilding = this.rebuilding.catch(() => undefined).then(() => this.rebuildNow());
    return this.rebuilding;
  }

  private async rebuildNow(): Promise<void> {
    const next = new Map<string, ZoneDevice>();
    const revokedKeys = new Set([...this.revoked.values()].flatMap((s) => (s ? [...s] : [])));
    const unreadable = new Set([...this.revoked].filter(([, keys]) => keys === null).map(([name]) => name));
    for (const [name, jwt] of this.docs) {
      let doc: DeviceDoc;
      try {
        doc = await verifyZoneDeviceDoc(jwt, this.opts.boot);
      } catch (err) {
        this.opts.log?.warn({ device: name, err: (err as Error).message }, 'ignoring a device document that does not verify');
        continue;
      }
      if (doc.name !== name) {
        this.opts.log?.warn({ key: `devices/${name}/doc`, device: doc.name }, 'ignoring a device document stored under another name');
        continue;
      }
      if (revokedKeys.has(doc.key) || unreadable.has(name)) continue;
      next.set(name, { doc, publicKey: publicKeyFromB64(doc.key), addresses: this.infos.get(name) ?? [] });
    }
    const removed = [...this.devices.values()].filter((d) => next.get(d.doc.name)?.doc.key !== d.doc.key);
    this.devices = next;
    if (removed.length) for (const fn of this.listeners) fn(removed);
  }
}

function parseAddresses(value: string): string[] {
  try {
    const r = deviceReport.safeParse(JSON.parse(value));
    if (!r.success) return [];
    const v4 = r.data.addresses.filter((a) => a.family === 'IPv4').map((a) => a.address);
    const v6 = r.data.addresses.filter((a) => a.family === 'IPv6' && !a.address.startsWith('fe80')).map((a) => a.address);
    return [...v4, ...v6];
  } catch {
    return [];
  }
}
