// This node's disks (docs/dcfs.md, "Disks"): a chunk store opened on every directory `storage/disks/<this node>/...`
// names, closed when its record goes, and marked unreachable (with why) when it cannot be opened, so status says
// what is wrong instead of the node failing. Repairs and scrub times are counted here, per disk.
import { mkdirSync } from 'node:fs';
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import type { Logger } from '../../lib/log/logger.ts';
import type { DiskRecord } from '../../lib/config/storage-records.ts';
import { ChunkStore, type ChunkStoreStats } from './chunk-store.ts';

export interface LocalDisk {
  id: string;
  record: DiskRecord;
  store: ChunkStore | null;
  /** Why the store is not open. */
  error: string | null;
  repairs: number;
  last_scrub_at: number | null;
}

export interface DiskReport {
  disk_id: string;
  path: string;
  state: 'active' | 'draining' | 'unreachable';
  chunks: number;
  bytes: number;
  capacity_bytes: number;
  free_bytes: number;
  errors: { read: number; write: number; corrupt: number };
  repairs: number;
  last_scrub_at: number | null;
  problem: string | null;
}

export class DiskSet {
  private readonly disks = new Map<string, LocalDisk>();
  private syncing: Promise<void> = Promise.resolve();

  /** Disks whose chunk store was made on this node: opened later, each must find its store where it was made. */
  private readonly made: Set<string>;

  /** `madeFile` (on the node's own disk, not the data disks) remembers which stores were made here; without it,
   * a store is made wherever none is found. */
  constructor(
    private readonly log: Logger,
    private readonly madeFile?: string,
  ) {
    this.made = new Set(madeFile ? readMade(madeFile) : []);
  }

  /** Opens new disks and closes removed ones, to match `records` (this node's). One sync at a time. */
  sync(records: ReadonlyMap<string, DiskRecord>): Promise<void> {
    this.syncing = this.syncing.then(() => this.syncNow(records));
    return this.syncing;
  }

  private async syncNow(records: ReadonlyMap<string, DiskRecord>): Promise<void> {
    for (const [id, d] of this.disks) {
      const want = records.get(id);
      if (!want || want.path !== d.record.path) {
        await d.store?.close().catch(() => undefined);
        this.disks.delete(id);
        this.log.info({ disk: id, path: d.record.path }, 'dfs: disk closed');
      } else d.record = want;
    }
    for (const [id, record] of records) {
      const have = this.disks.get(id);
      if (have?.store) continue;
      const disk: LocalDisk = have ?? { id, record, store: null, error: null, repairs: 0, last_scrub_at: null };
      const made = this.made.has(id);
      try {
        if (!made) mkdirSync(record.path, { recursive: false });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          disk.error = `cannot use ${record.path}: ${(err as Error).message}`;
          this.disks.set(id, disk);
          continue;
        }
      }
      try {
        // Every chunk goes into the packs: a file per chunk would cost two fsyncs per chunk (~8,000 per GiB).
        disk.store = await ChunkStore.open(record.path, { diskId: id, packThreshold: Infinity, create: !made });
        disk.error = null;
        if (!made && this.madeFile) {
          this.made.add(id);
          try {
            mkdirSync(dirname(this.madeFile), { recursive: true });
            writeFileAtomic(this.madeFile, `${JSON.stringify([...this.made].sort())}\n`);
          } catch (err) {
            this.log.warn({ disk: id, err: (err as Error).message }, 'dfs: cannot record that this disk\'s store was made here');
          }
        }
        this.log.info({ disk: id, path: record.path }, 'dfs: disk opened');
      } catch (err) {
        disk.error = `cannot open the chunk store in ${record.path}: ${(err as Error).message}`;
        this.log.error({ disk: id, err: disk.error }, 'dfs: disk unusable');
      }
      this.disks.set(id, disk);
    }
  }

  get(id: string): LocalDisk | undefined {
    return this.disks.get(id);
  }

  /** Open disks, in id order. */
  open(): (LocalDisk & { store: ChunkStore })[] {
    return [...this.disks.values()].filter((d): d is LocalDisk & { store: ChunkStore } => d.store !== null).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  all(): LocalDisk[] {
    return [...this.disks.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async report(): Promise<DiskReport[]> {
    const out: DiskReport[] = [];
    for (const d of this.all()) {
      let s: ChunkStoreStats | null = null;
      let problem = d.error;
      if (d.store) {
        try {
          s = await d.store.stats();
        } catch (err) {
          problem = `statistics unavailable: ${(err as Error).message}`;
        }
      }
      out.push({
        disk_id: d.id,
        path: d.record.path,
        state: d.store === null ? 'unreachable' : d.record.state,
        chunks: s?.chunks ?? 0,
        bytes: s?.bytes ?? 0,
        capacity_bytes: s?.capacity_bytes ?? 0,
        free_bytes: s?.free_bytes ?? 0,
        errors: { read: s?.errors.read ?? 0, write: s?.errors.write ?? 0, corrupt: (s?.errors.corrupt ?? 0) + (s?.errors.missing ?? 0) },
        repairs: d.repairs,
        last_scrub_at: d.last_scrub_at,
        problem,
      });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.syncing;
    for (const d of this.disks.values()) await d.store?.close().catch(() => undefined);
    this.disks.clear();
  }
}

function readMade(file: string): string[] {
  const text = readTextIfExists(file);
  if (text === null) return [];
  const ids: unknown = JSON.parse(text);
  if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new Error(`${file} is not a list of disk ids`);
  return ids;
}
