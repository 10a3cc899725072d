// Chunk collection (docs/dcfs.md, "Chunk collection"): deletes the chunks on this node's disks that no volume of the
// zone names any more (a version dropped, the trash emptied, a write that died after some chunks were stored), then
// compacts the packs that deleting left half dead. Mark and sweep: the live set is every chunk named by every volume,
// read from each volume's primary, plus the chunks of writes under way there; a round whose live set cannot be read
// completely deletes nothing. Only chunks last stored a grace period before the live set was taken are candidates,
// so a chunk a writer has just stored (or reused) but not yet committed is never taken. A volume whose metadata is not
// the one an earlier round read (made anew, or gone back in its log) stops the sweep until an admin accepts it: its
// live set could be missing every chunk its files name.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../../lib/log/logger.ts';
import type { ChunkStore } from './chunk-store.ts';
import type { Files } from './files.ts';
import type { VolumeMeta } from './volume-meta.ts';
import type { HeldVolume } from './volumes.ts';

/** How long a chunk must have gone without being stored before collection may take it. */
export const GC_GRACE_MS = 3600 * 1000;

export interface GcOptions {
  /** See GC_GRACE_MS; covers a write between storing its chunks and committing, and clock skew between nodes. */
  graceMs: number;
  /** How often a round starts by itself. */
  intervalMs: number;
  /** Packs whose dead records make up at least this share are rewritten after a sweep. */
  minDeadRatio: number;
  /** The clock (ms) the grace period is measured on; the chunk stores must date their chunks on the same one. */
  now?: () => number;
}

export const DEFAULT_GC: GcOptions = { graceMs: GC_GRACE_MS, intervalMs: 3600 * 1000, minDeadRatio: 0.5 };

/** Ids of the live set read per request from a volume's primary. */
export const LIVE_PAGE = 5000;

/** One page of what a volume keeps alive: chunk ids its metadata names after a cursor, and (on the first page only)
 * the chunks of writes under way on its primary, read before that page so that a write committing meanwhile is in one
 * or the other, and which metadata answered (`origin`). */
export interface LivePage {
  ids: string[];
  writing: string[];
  origin?: VolumeMark;
}

/** Which metadata a volume's live set came from: its instance, and how far its log had gone. */
export interface VolumeMark {
  instance: string;
  seq: number;
}

/** Where a node keeps the marks of the last complete live set, by volume (`<name>@<created_at>`), across restarts. */
export interface MarkStore {
  load(): Record<string, VolumeMark>;
  save(marks: Record<string, VolumeMark>): void;
}

/** Marks in a JSON file, replaced whole (write, then rename). A file that cannot be read counts as no marks. */
export function fileMarks(path: string): MarkStore {
  return {
    load() {
      try {
        const m = JSON.parse(readFileSync(path, 'utf8')) as Record<string, VolumeMark>;
        return m && typeof m === 'object' ? m : {};
      } catch {
        return {};
      }
    },
    save(marks) {
      writeFileSync(`${path}.tmp`, JSON.stringify(marks), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    },
  };
}

/** Where a chunk store keeps the marks (its index's own notes). */
export interface NoteKeeper {
  note(name: string): string | null;
  setNote(name: string, value: string): void;
}

const MARKS_NOTE = 'gc_marks';

/**
 * The node's marks, kept on every disk too. The node's file sits beside the volumes' metadata on the system disk, so
 * losing or restoring one loses or restores the other (a rebuilt or restored system disk with the data disks kept):
 * its marks alone would let metadata made anew, or gone back, pass, and a round would delete every chunk on the kept
 * disks that the lost files named. So a volume's mark is also read from each disk, and the one with the furthest log
 * counts; marks of one volume from different metadata instances count as metadata made anew (nothing collected until
 * an admin accepts it).
 */
export function withDiskMarks(file: MarkStore, disks: () => NoteKeeper[]): MarkStore {
  return {
    load() {
      const out = { ...file.load() };
      for (const disk of disks()) {
        let theirs: Record<string, VolumeMark>;
        try {
          theirs = JSON.parse(disk.note(MARKS_NOTE) ?? '{}') as Record<string, VolumeMark>;
        } catch {
          continue;
        }
        for (const [key, m] of Object.entries(theirs)) {
          if (!m || typeof m.instance !== 'string' || typeof m.seq !== 'number') continue;
          const have = out[key];
          if (!have) out[key] = m;
          else if (have.instance !== m.instance) out[key] = { instance: `${have.instance}|${m.instance}`, seq: Math.max(have.seq, m.seq) };
          else if (m.seq > have.seq) out[key] = m;
        }
      }
      return out;
    },
    save(marks) {
      file.save(marks);
      const text = JSON.stringify(marks);
      for (const disk of disks()) {
        try {
          disk.setNote(MARKS_NOTE, text);
        } catch {
          // A disk that cannot take its note reports its write errors itself; the other copies of the marks stand.
        }
      }
    },
  };
}

/** A page of a volume's live set from its primary (this node or another). Throws when it cannot be had. */
export type LivePager = (volume: string, primary: string, after: string, limit: number) => Promise<LivePage>;

/** The live-set page of a volume this node is primary for (served to other nodes, and read by this node's own rounds). */
export function localLivePage(
  volumes: { get(name: string): { role: HeldVolume['role']; meta: Pick<VolumeMeta, 'chunkIds' | 'instance' | 'lastSeq'> } | undefined },
  files: Pick<Files, 'writingChunks'>,
  volume: string,
  after: string,
  limit: number,
): LivePage {
  const v = volumes.get(volume);
  if (!v || v.role !== 'primary') throw new Error(`this node is not the primary of volume ${volume}`);
  if (after !== '') return { ids: v.meta.chunkIds(after, limit).map((c) => c.id), writing: [] };
  // The log's position before the page: a change after it is younger than the grace period anyway.
  const origin = { instance: v.meta.instance, seq: v.meta.lastSeq };
  return { writing: files.writingChunks(volume), ids: v.meta.chunkIds(after, limit).map((c) => c.id), origin };
}

export interface GcDiskTotals {
  /** Chunks deleted since the service started. */
  chunks: number;
  /** Their bytes. */
  bytes: number;
  /** Pack bytes given back to the filesystem by compaction since the service started. */
  compacted_bytes: number;
  /** Why the last round stopped short on this disk (it went on with the others), or null. */
  last_error: string | null;
}

export interface GcState {
  running: boolean;
  /** When the last round ended. */
  last_at: number | null;
  last_outcome: 'swept' | 'skipped' | 'failed' | null;
  /** Why the last round skipped its sweep or failed. */
  last_reason: string | null;
  /** Chunks in the last complete live set. */
  live_chunks: number;
  disks: Record<string, GcDiskTotals>;
}

export interface GcRound {
  outcome: 'swept' | 'skipped';
  reason: string | null;
  /** Per disk, this round: chunks and bytes deleted, pack bytes reclaimed. */
  disks: Record<string, GcDiskTotals>;
}

export interface CollectorDeps {
  /** This node's open chunk stores. */
  disks: () => { id: string; store: ChunkStore }[];
  /** Every volume of the zone, its primary and its record's creation time, read afresh; throws when the zone's
   * configuration cannot be read. */
  volumes: () => Promise<{ name: string; primary: string; created_at: number }[]>;
  page: LivePager;
  marks: MarkStore;
  log: Logger;
}

export class Collector {
  private s: GcState = { running: false, last_at: null, last_outcome: null, last_reason: null, live_chunks: 0, disks: {} };
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(
    private readonly d: CollectorDeps,
    private readonly opts: GcOptions = DEFAULT_GC,
  ) {
    this.now = opts.now ?? Date.now;
  }

  state(): GcState {
    return { ...this.s, disks: Object.fromEntries(Object.entries(this.s.disks).map(([k, v]) => [k, { ...v }])) };
  }

  /** Starts the periodic rounds. */
  run(): void {
    this.timer = setInterval(() => this.start(), this.opts.intervalMs).unref();
  }

  /** Starts a round unless one is running; answers whether it started. `accept`: see collect(). */
  start(accept: readonly string[] = []): boolean {
    if (this.s.running || this.stopped) return false;
    void this.collect(accept).catch(() => undefined);
    return true;
  }

  /**
   * One round: mark, sweep, compact. Rejects when one is running already. `accept`: volumes whose metadata is to be
   * taken as it is now though it is not the one an earlier round read (an admin's answer to a skipped round).
   */
  async collect(accept: readonly string[] = []): Promise<GcRound> {
    if (this.s.running) throw new Error('a collection round is running');
    this.s.running = true;
    try {
      const round = await this.round(accept);
      this.s.last_outcome = round.outcome;
      this.s.last_reason = round.reason;
      return round;
    } catch (err) {
      this.s.last_outcome = 'failed';
      this.s.last_reason = (err as Error).message;
      this.d.log.error({ err: (err as Error).message }, 'dfs: chunk collection failed');
      throw err;
    } finally {
      this.s.running = false;
      this.s.last_at = this.now();
    }
  }

  private async round(accept: readonly string[]): Promise<GcRound> {
    // Taken before anything is read: a chunk stored or reused after this moment is younger than any cutoff below.
    const takenAt = this.now();
    const live = await this.liveSet(accept);
    if (typeof live === 'string') {
      this.d.log.warn({ reason: live }, 'dfs: chunk collection skipped its sweep: the live set is incomplete');
      return { outcome: 'skipped', reason: live, disks: {} };
    }
    this.s.live_chunks = live.size;
    const cutoff = takenAt - this.opts.graceMs;
    const out: Record<string, GcDiskTotals> = {};
    for (const { id, store } of this.d.disks()) {
      const r: GcDiskTotals = { chunks: 0, bytes: 0, compacted_bytes: 0, last_error: null };
      out[id] = r;
      // A disk that fails (unreadable, refusing writes) ends its own part of the round, not the others': their
      // garbage is collected whatever one broken disk does.
      try {
        for await (const chunk of store.listStoredBefore(cutoff)) {
          if (this.stopped) break;
          if (live.has(chunk)) continue;
          const freed = await store.collect(chunk, cutoff);
          if (freed === null) continue;
          r.chunks++;
          r.bytes += freed;
        }
        if (!this.stopped) r.compacted_bytes = (await store.compact({ minDeadRatio: this.opts.minDeadRatio })).bytes_reclaimed;
      } catch (err) {
        r.last_error = (err as Error).message;
        this.d.log.warn({ disk: id, err: r.last_error }, 'dfs: chunk collection stopped short on a disk');
      }
      const t = (this.s.disks[id] ??= { chunks: 0, bytes: 0, compacted_bytes: 0, last_error: null });
      t.chunks += r.chunks;
      t.bytes += r.bytes;
      t.compacted_bytes += r.compacted_bytes;
      t.last_error = r.last_error;
      if (r.chunks > 0 || r.compacted_bytes > 0) this.d.log.info({ disk: id, ...r }, 'dfs: collected unreferenced chunks');
    }
    return { outcome: 'swept', reason: null, disks: out };
  }

  /**
   * Every chunk some volume of the zone keeps alive, or why that cannot be known completely now. The marks of a
   * complete set are kept for the next round; they change only then, so a round that found a volume's metadata
   * replaced keeps finding it until an admin accepts it.
   */
  private async liveSet(accept: readonly string[]): Promise<Set<string> | string> {
    let vols: { name: string; primary: string; created_at: number }[];
    try {
      vols = await this.d.volumes();
    } catch (err) {
      return `the zone's volumes could not be read: ${(err as Error).message}`;
    }
    const before = this.d.marks.load();
    const marks: Record<string, VolumeMark> = {};
    const live = new Set<string>();
    for (const v of vols) {
      // A volume deleted and made again under the same name is another record, so another key: no mark to meet.
      const key = `${v.name}@${v.created_at}`;
      try {
        for (let after = ''; ; ) {
          if (this.stopped) return 'the service is stopping';
          const page = await this.d.page(v.name, v.primary, after, LIVE_PAGE);
          if (after === '') {
            if (!page.origin) throw new Error('its primary did not say which metadata answered');
            const was = accept.includes(v.name) ? undefined : before[key];
            if (was && (was.instance !== page.origin.instance || page.origin.seq < was.seq)) {
              const what = was.instance !== page.origin.instance ? 'was made anew' : `went back from log entry ${was.seq} to ${page.origin.seq}`;
              return `the metadata of volume ${v.name} on ${v.primary} ${what} since the last round, so it may not name every chunk its files had; nothing is collected until an admin accepts it (buckyos fs gc --accept ${v.name})`;
            }
            marks[key] = page.origin;
          }
          for (const id of page.writing) live.add(id);
          for (const id of page.ids) live.add(id);
          if (page.ids.length < LIVE_PAGE) break;
          after = page.ids[page.ids.length - 1]!;
        }
      } catch (err) {
        return `the chunks of volume ${v.name} could not be read from its primary ${v.primary}: ${(err as Error).message}`;
      }
    }
    this.d.marks.save(marks);
    return live;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }
}
