// Reads what the scheduler decides from: one pass over system-config turned into derive()'s plain input. Everything
// untrusted is checked here — device documents against the owner key, every JSON record against its schema — so
// derive() never sees a forged device or a malformed document; what is refused is named in `problems`.
import type { systemConfigApi } from '../../lib/api/system-config.ts';
import {
  SERVICE_NAME,
  appSpecSchema,
  instanceReportSchema,
  serviceSpecSchema,
  type ServiceSpec,
} from '../../lib/config/zone-records.ts';
import { parseRecord } from '../../lib/config/store-control.ts';
import { DISK_KEY, VOLUME_KEY, diskRecordSchema, volumeRecordSchema } from '../../lib/config/storage-records.ts';
import { USER_SETTINGS_KEY } from '../../lib/config/user-records.ts';
import { type DeviceDoc, type ZoneBootConfig, verifyZoneDeviceDoc } from '../../lib/identity/documents.ts';
import { revokedKeysOf } from '../../lib/identity/device-directory.ts';
import type { Client } from '../../lib/krpc/index.ts';
import { RBAC_TAIL_KEY } from '../../lib/rbac/config-sync.ts';
import { type DeviceInput, type InstalledApp, type InstanceInput, type SchedulerInput, isOwnedKey } from './derive.ts';

type ConfigReader = Pick<Client<typeof systemConfigApi.methods>, 'list' | 'get'>;

export interface Snapshot {
  input: SchedulerInput;
  /** The owned keys as read, with their revisions: what a write must compare against. */
  owned: Record<string, { value: string; revision: number }>;
  problems: string[];
}

/** The most keys one list may return; a prefix that fills it is reported, because the rest would go unseen. */
const LIST_LIMIT = 10_000;

const DEVICE_DOC = /^devices\/([^/]+)\/doc$/;
const DEVICE_INFO = /^devices\/([^/]+)\/info$/;
const INSTANCE = /^services\/([^/]+)\/instances\/([^/]+)$/;
const SPEC = /^services\/([^/]+)\/spec$/;
const APP_SPEC = /^users\/([^/]+)\/apps\/([^/]+)\/spec$/;

/** What the scheduler needs of `devices/<n>/info`: lenient, since a report with less in it is still a report. */
function deviceFacts(value: string | undefined): Pick<DeviceInput, 'memory_bytes' | 'ipv4'> {
  let info: { memory?: { total_bytes?: unknown } | null; addresses?: unknown } | null = null;
  try {
    const v: unknown = value === undefined ? null : JSON.parse(value);
    if (v !== null && typeof v === 'object') info = v;
  } catch {
    info = null;
  }
  const total = info?.memory?.total_bytes;
  const addresses = (Array.isArray(info?.addresses) ? info.addresses : []) as ({ family?: unknown; address?: unknown } | null)[];
  const v4 = addresses.find((a) => a?.family === 'IPv4' && typeof a.address === 'string');
  return { memory_bytes: typeof total === 'number' ? total : null, ipv4: typeof v4?.address === 'string' ? v4.address : null };
}

export class SnapshotReader {
  /** Device documents already verified, by their exact JWT text: a signature check per document, not per tick. */
  private verified = new Map<string, DeviceDoc>();

  constructor(
    private readonly config: ConfigReader,
    private readonly boot: ZoneBootConfig,
  ) {}

  async read(): Promise<Snapshot> {
    const problems: string[] = [];
    const list = async (prefix: string, keysOnly = false) => {
      const r = await this.config.list({ prefix, limit: LIST_LIMIT, keys_only: keysOnly });
      if (r.entries.length >= LIST_LIMIT) problems.push(`${prefix}: more than ${LIST_LIMIT} keys; the rest were not read`);
      return r.entries;
    };
    const [devices, nodes, services, users, storage] = await Promise.all([
      list('devices/'), list('nodes/'), list('services/'), list('users/', true), list('storage/'),
    ]);
    const tail = await this.config.get({ key: RBAC_TAIL_KEY });

    const owned: Snapshot['owned'] = {};
    for (const e of [...nodes, ...services]) if (isOwnedKey(e.key)) owned[e.key] = { value: e.value, revision: e.revision };
    if (tail.value !== null) owned[RBAC_TAIL_KEY] = { value: tail.value, revision: tail.revision };

    const untrusted: string[] = [];
    return {
      input: {
        devices: await this.devices(devices, problems, untrusted),
        untrusted,
        instances: this.instances(services, problems),
        specs: this.specs(services, problems),
        apps: await this.apps(users.map((e) => e.key), problems),
        storageNodes: storageNodes(storage, problems),
        current: Object.fromEntries(Object.entries(owned).map(([k, v]) => [k, v.value])),
      },
      owned,
      problems,
    };
  }

  private async devices(entries: { key: string; value: string }[], problems: string[], untrusted: string[]): Promise<Record<string, DeviceInput>> {
    const infos = new Map<string, string>();
    const revoked = new Map<string, string>();
    for (const e of entries) {
      const m = DEVICE_INFO.exec(e.key);
      if (m) infos.set(m[1], e.value);
      const r = /^devices\/([^/]+)\/revoked$/.exec(e.key);
      if (r) revoked.set(r[1]!, e.value);
    }
    const verified = new Map<string, DeviceDoc>();
    const out: Record<string, DeviceInput> = {};
    for (const e of entries) {
      const m = DEVICE_DOC.exec(e.key);
      if (!m) continue;
      let doc = this.verified.get(e.value);
      if (doc !== undefined && doc.exp <= Date.now() / 1000) doc = undefined;
      if (doc === undefined) {
        try {
          doc = await verifyZoneDeviceDoc(e.value.trim(), this.boot);
        } catch (err) {
          problems.push(`${e.key}: ${(err as Error).message}; the device is treated as dead`);
          untrusted.push(m[1]!);
          continue;
        }
      }
      if (revokedKeysOf(revoked.get(m[1]!))?.has(doc.key) !== false) {
        problems.push(`${e.key}: the device's key was revoked when it was removed`);
        continue;
      }
      if (doc.name !== m[1] || doc.zone !== this.boot.zone) {
        problems.push(`${e.key}: the document is for device ${doc.name} of zone ${doc.zone}; the device is treated as dead`);
        untrusted.push(m[1]!);
        continue;
      }
      verified.set(e.value, doc);
      out[m[1]] = { role: doc.role, ...deviceFacts(infos.get(m[1])) };
    }
    this.verified = verified;
    return out;
  }

  private instances(entries: { key: string; value: string }[], problems: string[]): InstanceInput[] {
    const out: InstanceInput[] = [];
    for (const e of entries) {
      const m = INSTANCE.exec(e.key);
      if (!m) continue;
      const r = parseRecord(instanceReportSchema, e.value, { key: e.key, problems });
      if (r === null) continue;
      if (r.node !== m[2]) {
        problems.push(`${e.key}: reports node ${r.node}`);
        continue;
      }
      out.push({ service: m[1], node: m[2], port: r.port, state: r.state, healthy: r.healthy, heartbeat_at: r.heartbeat_at });
    }
    return out;
  }

  private specs(entries: { key: string; value: string }[], problems: string[]): Record<string, ServiceSpec> {
    const out: Record<string, ServiceSpec> = {};
    for (const e of entries) {
      const m = SPEC.exec(e.key);
      if (!m) continue;
      if (!SERVICE_NAME.test(m[1])) {
        problems.push(`${e.key}: "${m[1]}" is not a service name`);
        continue;
      }
      const spec = parseRecord(serviceSpecSchema, e.value, { key: e.key, problems });
      if (spec !== null) out[m[1]] = spec;
    }
    return out;
  }

  /** Installed apps of users who exist: a deleted user's leftover specs grant nothing. */
  private async apps(keys: string[], problems: string[]): Promise<InstalledApp[]> {
    const users = new Set(keys.flatMap((k) => USER_SETTINGS_KEY.exec(k)?.[1] ?? []));
    const specKeys = keys.filter((k) => {
      const m = APP_SPEC.exec(k);
      return m !== null && users.has(m[1]);
    });
    const values = await Promise.all(specKeys.map((key) => this.config.get({ key })));
    const out: InstalledApp[] = [];
    for (const e of values) {
      if (e.value === null) continue;
      const [, user, app] = APP_SPEC.exec(e.key)!;
      const spec = parseRecord(appSpecSchema, e.value, { key: e.key, problems });
      if (spec !== null) out.push({ user, app, permissions: spec.permissions });
    }
    return out;
  }
}

/** Nodes that hold a disk (`storage/disks/<node>/<disk>`) or a volume's metadata (`storage/volumes/<v>`). */
export function storageNodes(entries: readonly { key: string; value: string }[], problems: string[]): string[] {
  const out = new Set<string>();
  for (const e of entries) {
    const disk = DISK_KEY.exec(e.key);
    if (disk) {
      const r = parseRecord(diskRecordSchema, e.value, { key: e.key, problems });
      if (r !== null) out.add(disk[1]!);
      continue;
    }
    if (VOLUME_KEY.test(e.key)) {
      const v = parseRecord(volumeRecordSchema, e.value, { key: e.key, problems });
      if (v !== null) for (const n of [v.primary, ...v.followers]) out.add(n);
    }
  }
  return [...out].sort();
}
