// What a dfs instance knows of the zone's storage (docs/dcfs.md, "Configuration"): the disks of every node and every
// volume from `storage/`, where dfs instances run from `services/dfs/info`, and what each node last reported of its
// disks (`services/dfs/status/<node>`). Followed by watch, re-listed when a watch fails, so a change made anywhere
// reaches every instance within moments.
import type { systemConfigApi } from '../../lib/api/system-config.ts';
import type { DiskReport } from './disks.ts';
import type { Client } from '../../lib/krpc/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { serviceInfoSchema } from '../../lib/config/zone-records.ts';
import { parseRecord } from '../../lib/config/store-control.ts';
import {
  DISK_KEY, VOLUME_KEY, type DiskRecord, type VolumeRecord, diskRecordSchema, volumeRecordSchema,
} from '../../lib/config/storage-records.ts';

type ConfigClient = Pick<Client<typeof systemConfigApi.methods>, 'list' | 'watch'>;

export const DFS_INFO_KEY = 'services/dfs/info';
export const statusKey = (node: string) => `services/dfs/status/${node}`;
const STATUS_KEY = /^services\/dfs\/status\/([^/]+)$/;

/** What a node last reported of one of its disks (disks.ts DiskReport). */
export type ReportedDisk = DiskReport;

export interface ZoneStorage {
  disks: { node: string; disk: string; record: DiskRecord }[];
  volumes: Map<string, VolumeRecord>;
  /** Nodes whose dfs instance is running. */
  live: Set<string>;
  reported: Map<string, ReportedDisk[]>;
  /** Records that did not parse, with why: shown in status, never acted on. */
  problems: string[];
}

export function readZoneStorage(entries: readonly { key: string; value: string }[]): ZoneStorage {
  const out: ZoneStorage = { disks: [], volumes: new Map(), live: new Set(), reported: new Map(), problems: [] };
  for (const e of entries) {
    const d = DISK_KEY.exec(e.key);
    if (d) {
      const r = parseRecord(diskRecordSchema, e.value, { key: e.key, problems: out.problems });
      if (r) out.disks.push({ node: d[1]!, disk: d[2]!, record: r });
      continue;
    }
    const v = VOLUME_KEY.exec(e.key);
    if (v) {
      const r = parseRecord(volumeRecordSchema, e.value, { key: e.key, problems: out.problems });
      if (r) out.volumes.set(v[1]!, r);
      continue;
    }
    if (e.key === DFS_INFO_KEY) {
      const info = parseRecord(serviceInfoSchema, e.value, { key: e.key, problems: out.problems });
      for (const i of info?.instances ?? []) if (i.state === 'running') out.live.add(i.node);
      continue;
    }
    const s = STATUS_KEY.exec(e.key);
    if (s) {
      try {
        const doc = JSON.parse(e.value) as { disks?: ReportedDisk[] };
        if (Array.isArray(doc.disks)) out.reported.set(s[1]!, doc.disks);
      } catch {
        out.problems.push(`${e.key}: not JSON`);
      }
    }
  }
  return out;
}

/** Follows `storage/` and dfs's own service keys; `current` is always the latest complete reading. */
export class ZoneView {
  current: ZoneStorage = { disks: [], volumes: new Map(), live: new Set(), reported: new Map(), problems: [] };
  private listeners = new Set<(z: ZoneStorage) => void>();
  private loadedOnce!: Promise<void>;
  private markLoaded!: () => void;

  constructor(
    private readonly config: ConfigClient,
    private readonly log: Logger,
  ) {
    this.loadedOnce = new Promise((r) => (this.markLoaded = r));
  }

  /** Resolves after the first complete reading. */
  loaded(): Promise<void> {
    return this.loadedOnce;
  }

  onChange(fn: (z: ZoneStorage) => void): void {
    this.listeners.add(fn);
  }

  async refresh(): Promise<number> {
    const [storage, dfs] = await Promise.all([
      this.config.list({ prefix: 'storage/', limit: 10_000 }),
      this.config.list({ prefix: 'services/dfs/', limit: 10_000 }),
    ]);
    this.current = readZoneStorage([...storage.entries, ...dfs.entries]);
    this.markLoaded();
    for (const fn of this.listeners) fn(this.current);
    return Math.max(storage.revision, dfs.revision);
  }

  /** Re-reads at once on a change under `storage/` or `services/dfs/` (instances coming and going, disks reported),
   * and every 10 s anyway, until `signal` aborts. */
  async follow(signal: AbortSignal): Promise<void> {
    await Promise.all(['storage/', 'services/dfs/'].map((prefix) => this.watch(prefix, signal)));
  }

  private async watch(prefix: string, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const rev = await this.refresh();
        await this.config.watch({ prefix, after_revision: rev, timeout_ms: 10_000 }, { timeoutMs: 20_000 });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ prefix, err: (err as Error).message }, 'dfs: following storage configuration failed; re-listing');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}
