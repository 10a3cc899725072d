// The volumes this node keeps metadata for (docs/dcfs.md, "Volumes on nodes"): as primary it owns the volume's
// metadata and its log; as follower it pulls the primary's log every second and applies it, so it can serve reads
// when cut off, and catches up from a snapshot when the primary no longer keeps the entries it needs. Every copy
// truncates its log in the background (log-retention.ts). A node with no role in a volume keeps nothing and forwards
// to the primary.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { join } from 'node:path';
import { fsyncPath, writeFileAtomic } from '../../lib/identity/keys.ts';
import type { Logger } from '../../lib/log/logger.ts';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import { DEFAULT_RETENTION, FollowerPositions, type RetentionConfig, followerTruncation, primaryTruncation } from './log-retention.ts';
import type { PeerChunks } from './peers.ts';
import { type OutgoingSnapshot, checkSnapshot, makeSnapshot } from './snapshots.ts';
import { type LogEntry, MetaError, type SnapshotInfo, VolumeMeta } from './volume-meta.ts';

export interface HeldVolume {
  name: string;
  record: VolumeRecord;
  role: 'primary' | 'follower';
  meta: VolumeMeta;
  /** Followers: the primary's last sequence number as it last answered, when a pull last caught up (kept across
   * restarts, SYNCED_FILE), and why the last one failed (null once one succeeds). */
  primarySeq: number | null;
  syncedAt: number | null;
  syncError: string | null;
  /** Followers: the last entry the primary no longer keeps, as it last answered; null until it has. */
  primaryLogStart: number | null;
  /** Followers: the syncedAt last written down. */
  savedSyncedAt: number | null;
  /** Primaries: where its followers stand, for retention. */
  positions: FollowerPositions | null;
}

export interface VolumeSetOptions {
  retention?: RetentionConfig;
  /** How long an entry stays in a volume's trash before its primary purges it; 0 keeps it until someone does. */
  trashRetentionMs?: number;
  /** Milliseconds since the epoch: when followers are heard from and judged silent, when a pull caught up, and when a
   * failed snapshot may be asked for again. */
  now?: () => number;
}

const PULL_MS = 1000;
const PULL_BATCH = 1000;
/**
 * After a failed snapshot a volume waits this long before it asks for another, doubling with each failure up to the
 * last: each request has the primary back up and hash the whole metadata, and a follower short on disk learns so only
 * once the answer's headers arrive. The log is still pulled every second meanwhile.
 */
export const SNAPSHOT_RETRY_MS = { first: 5_000, max: 300_000 };
/** How often every copy's log is truncated to what it must keep. */
const RETAIN_MS = 60_000;
/** Entries dropped per transaction, so that the first truncation of a long log does not hold the event loop. */
const TRUNCATE_STEP = 10_000;
/** How often, at most, a follower writes down when it last caught up (and when dfs stops). */
const SYNCED_SAVE_MS = 60_000;

/** Beside a volume's metadata: the role this node last opened it in. */
const ROLE_FILE = 'role';
/** Beside a primary's metadata: its followers' positions (FollowerPositions). */
const POSITIONS_FILE = 'followers.json';
/** Beside a follower's metadata: when a pull last caught up (ms), so `synced_at` means the same after a restart. */
const SYNCED_FILE = 'synced-at';

function lastRole(dir: string): string | null {
  return readTextIfExists(join(dir, ROLE_FILE))?.trim() ?? null;
}

function savedSyncedAt(dir: string): number | null {
  const at = Number(readTextIfExists(join(dir, SYNCED_FILE))?.trim());
  return Number.isSafeInteger(at) && at > 0 ? at : null;
}

const message = (err: unknown): string => (err instanceof MetaError ? `${err.code}: ${err.message}` : (err as Error).message);


export class VolumeSet {
  private readonly held = new Map<string, HeldVolume>();
  private timer: NodeJS.Timeout | null = null;
  private retainTimer: NodeJS.Timeout | null = null;
  /** Followed volumes whose pull is under way, by name: each volume is pulled on its own, one pull at a time. */
  private readonly pulling = new Map<string, Promise<void>>();
  /** Followed volumes whose last snapshot failed, by name: from which primary, how long it waited, until when. */
  private readonly snapshotWaits = new Map<string, { primary: string; waitMs: number; until: number }>();
  /** Aborts the snapshot downloads under way when the set is closed. */
  private readonly stopping = new AbortController();
  private retaining = false;
  private stopped = false;
  private readonly retention: RetentionConfig;
  private readonly trashRetentionMs: number;
  private readonly now: () => number;
  /** Volumes whose purges are being finished (finishPurges). */
  private readonly erasing = new Set<string>();

  constructor(
    private readonly self: string,
    private readonly dataDir: string,
    private readonly peers: PeerChunks,
    private readonly log: Logger,
    opts: VolumeSetOptions = {},
  ) {
    this.retention = opts.retention ?? DEFAULT_RETENTION;
    this.trashRetentionMs = opts.trashRetentionMs ?? 0;
    if (!Number.isSafeInteger(this.trashRetentionMs) || this.trashRetentionMs < 0) throw new Error(`trash retention must be 0 ms or more, not ${this.trashRetentionMs}`);
    this.now = opts.now ?? Date.now;
    const { windowMs, keepEntries } = this.retention;
    if (!Number.isSafeInteger(windowMs) || windowMs < 0 || !Number.isSafeInteger(keepEntries) || keepEntries < 1) {
      throw new Error(`log retention needs a window of 0 ms or more and at least 1 entry kept, not ${windowMs} ms and ${keepEntries}`);
    }
    // Snapshots being made when the service last stopped.
    rmSync(this.snapshotDir, { recursive: true, force: true });
  }

  /** Where a primary makes the snapshots it sends. */
  private get snapshotDir(): string {
    return join(this.dataDir, 'snapshots');
  }

  /** Opens the metadata of volumes this node now has a role in, closes the others. */
  sync(volumes: ReadonlyMap<string, VolumeRecord>): void {
    for (const [name, v] of this.held) {
      const rec = volumes.get(name);
      const role = rec ? this.roleIn(rec) : null;
      if (role !== v.role) {
        v.meta.close();
        this.held.delete(name);
        this.snapshotWaits.delete(name);
        this.log.info({ volume: name, was: v.role }, 'dfs: no longer holding volume metadata');
      } else v.record = rec!;
    }
    for (const [name, rec] of volumes) if (!this.held.has(name)) this.hold(name, rec);
    if (!this.timer && !this.stopped) {
      this.timer = setInterval(() => {
        void this.pullAll();
        this.finishPurges();
      }, PULL_MS);
    }
    if (!this.retainTimer && !this.stopped) this.retainTimer = setInterval(() => void this.retainAll(), RETAIN_MS);
  }

  private hold(name: string, rec: VolumeRecord): void {
    const role = this.roleIn(rec);
    if (!role) return;
    try {
      const dir = this.metadataDir(name, role);
      const meta = VolumeMeta.open(join(dir, 'meta.db'), { volume: name, role, keepVersions: rec.keep_versions });
      const positions = role === 'primary' ? new FollowerPositions(join(dir, POSITIONS_FILE)) : null;
      if (positions?.problem) this.log.warn({ volume: name, problem: positions.problem }, 'dfs: the followers\' positions cannot be read; each keeps the log until it reports');
      positions?.track(rec.followers, this.now());
      const syncedAt = role === 'follower' ? savedSyncedAt(dir) : null;
      this.held.set(name, { name, record: rec, role, meta, primarySeq: null, syncedAt, syncError: null, primaryLogStart: null, savedSyncedAt: syncedAt, positions });
      this.log.info({ volume: name, role }, 'dfs: holding volume metadata');
    } catch (err) {
      this.log.error({ volume: name, role, err: (err as Error).message }, 'dfs: cannot open volume metadata');
    }
  }

  /**
   * The directory of a volume's metadata, made ready for `role`. A copy this node kept as primary cannot follow
   * another primary (it may hold changes it never shipped, and its log would not match): when it is to follow, it is
   * set aside, kept for whoever wants what it holds, and the node starts an empty copy that fetches the whole log. A
   * follower's copy becoming primary is a promotion (`buckyos fs volume promote`), and goes on from where it is.
   */
  private metadataDir(name: string, role: 'primary' | 'follower'): string {
    const volumes = join(this.dataDir, 'volumes');
    const dir = join(volumes, name);
    // A snapshot that was being fetched when the service stopped: it is fetched again if still needed.
    rmSync(join(volumes, `${name}.incoming`), { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    if (role === 'follower' && lastRole(dir) === 'primary') {
      const aside = this.setAside(name, 'retired');
      mkdirSync(dir);
      this.log.warn({ volume: name, kept: aside }, 'dfs: this node\'s metadata of the volume was its primary\'s; set aside to follow the new primary from the start');
    }
    if (lastRole(dir) !== role) writeFileAtomic(join(dir, ROLE_FILE), `${role}\n`);
    return dir;
  }

  /** Moves a volume's metadata directory to `<name>.<why>-<ms>` beside it, durably; answers where it went. */
  private setAside(name: string, why: 'retired' | 'diverged' | 'replaced'): string {
    const volumes = join(this.dataDir, 'volumes');
    const aside = join(volumes, `${name}.${why}-${Date.now()}`);
    renameSync(join(volumes, name), aside);
    fsyncPath(volumes);
    return aside;
  }

  private roleIn(rec: VolumeRecord): 'primary' | 'follower' | null {
    return rec.primary === this.self ? 'primary' : rec.followers.includes(this.self) ? 'follower' : null;
  }

  get(name: string): HeldVolume | undefined {
    return this.held.get(name);
  }

  all(): HeldVolume[] {
    return [...this.held.values()];
  }

  /** `node` asked this primary for the log of `volume` after `seq`: a follower of it keeps needing what comes after. */
  heard(volume: string, node: string, seq: number): void {
    const v = this.held.get(volume);
    if (v?.positions && v.record.followers.includes(node)) v.positions.heard(node, seq, this.now());
  }

  /** A consistent snapshot of a volume this node is primary for, in a file of its own (snapshots.ts). */
  async snapshot(volume: string): Promise<OutgoingSnapshot> {
    const v = this.held.get(volume);
    if (v?.role !== 'primary') throw new MetaError('CONFLICT', `${this.self} is not the primary of volume ${volume}`);
    return makeSnapshot(v.meta, this.snapshotDir);
  }

  /** One round of log retention for every volume held here; a round still running is not doubled. */
  async retainAll(): Promise<void> {
    if (this.retaining) return;
    this.retaining = true;
    try {
      for (const v of [...this.held.values()]) {
        try {
          await this.retain(v);
        } catch (err) {
          this.log.warn({ volume: v.name, err: message(err) }, 'dfs: truncating the volume\'s metadata log failed; trying again next round');
        }
        try {
          this.expireTrash(v);
        } catch (err) {
          this.log.warn({ volume: v.name, err: message(err) }, 'dfs: purging expired trash failed; trying again next round');
        }
      }
    } finally {
      this.retaining = false;
    }
  }

  /** On a primary, purges what has been in the trash longer than the retention (a large folder only leaves the trash
   * here; finishPurges deletes its entries after). The quota it was charged to is freed with it. */
  private expireTrash(v: HeldVolume): void {
    if (v.role !== 'primary' || this.trashRetentionMs === 0) return;
    const { purged } = v.meta.emptyTrash(this.now() - this.trashRetentionMs);
    if (purged.length === 0) return;
    this.log.info({ volume: v.name, items: purged.length }, 'dfs: purged trash past its retention');
    this.finishPurges();
  }

  private async retain(v: HeldVolume): Promise<void> {
    const now = this.now();
    let through: number;
    if (v.positions) {
      v.positions.track(v.record.followers, now);
      through = primaryTruncation({ lastSeq: v.meta.lastSeq, logStart: v.meta.logStart, followers: v.record.followers, positions: v.positions.positions, now }, this.retention);
      // Before anything is dropped: after a restart the positions must not be ahead of what is kept.
      v.positions.save();
    } else {
      through = followerTruncation({ lastSeq: v.meta.lastSeq, logStart: v.meta.logStart, primaryLogStart: v.primaryLogStart }, this.retention);
    }
    const from = v.meta.logStart;
    let dropped = 0;
    for (let at = from; at < through && this.held.get(v.name) === v; ) {
      at = Math.min(through, at + TRUNCATE_STEP);
      dropped += v.meta.truncateLog(at);
      if (at < through) await new Promise((r) => setImmediate(r));
    }
    if (dropped > 0) this.log.info({ volume: v.name, role: v.role, through, dropped }, 'dfs: truncated the volume\'s metadata log');
  }

  /**
   * Deletes, batch by batch, what purges left to delete on the volumes this node is primary for
   * (VolumeMeta.finishPurges): at once after a purge, and on the timer, so a purge a restart interrupted is finished.
   */
  finishPurges(): void {
    for (const v of this.held.values()) {
      if (v.role !== 'primary' || this.erasing.has(v.name) || !v.meta.purgesLeft) continue;
      this.erasing.add(v.name);
      v.meta
        .finishPurges()
        .catch((err: unknown) => {
          if (this.held.get(v.name)?.meta !== v.meta) return;
          this.log.warn({ volume: v.name, err: message(err) }, 'dfs: deleting purged entries failed; trying again in a second');
        })
        .finally(() => this.erasing.delete(v.name));
    }
  }

  /**
   * One round of log shipping for every followed volume, each on its own, so that one volume's long snapshot or slow
   * primary holds up no other; a volume whose pull is still under way is not pulled again, that pull is awaited.
   */
  async pullAll(): Promise<void> {
    const rounds: Promise<void>[] = [];
    for (const v of [...this.held.values()]) {
      if (v.role !== 'follower') continue;
      let round = this.pulling.get(v.name);
      if (!round) {
        // A snapshot replaces the volume in `held` under the same name, so the name is what is marked.
        round = this.pull(v).finally(() => this.pulling.delete(v.name));
        this.pulling.set(v.name, round);
      }
      rounds.push(round);
    }
    await Promise.all(rounds);
  }

  private async pull(v: HeldVolume): Promise<void> {
    let restored = false;
    try {
      for (;;) {
        // From the last entry held here, not after it: apply() checks that entry against the primary's, so a copy
        // that went another way (a lagging follower promoted, the primary's metadata made anew) is caught instead of
        // taking the primary's later entries onto a different tree.
        const have = v.meta.lastSeq;
        const after = Math.max(0, have - 1);
        const answer = await this.peers.log(v.record.primary, v.name, after, PULL_BATCH, this.self);
        v.primaryLogStart = answer.logStart;
        if (after < answer.logStart) {
          // The primary no longer keeps the entries this copy needs next (it was away past the retention window, or
          // is new): it catches up from a snapshot, then reads the log on from the snapshot's seq.
          if (restored) throw new MetaError('LOG_GAP', `the primary ${v.record.primary} no longer keeps entry ${after + 1}, even after this copy took its snapshot`);
          const wait = this.snapshotWaits.get(v.name);
          // Still waiting after a failed snapshot: `sync_error` keeps saying why, and when it is tried again.
          if (wait && wait.primary === v.record.primary && this.now() < wait.until) return;
          v = await this.snapshotOrWait(v, wait);
          restored = true;
          continue;
        }
        const entries = answer.entries as LogEntry[];
        if (have > 0 && entries[0]?.seq !== have) {
          throw new MetaError('CONFLICT', `the primary ${v.record.primary} has no entry ${have}, which this copy holds: the copy went another way`);
        }
        if (entries.length > 0) v.meta.apply(entries);
        v.primarySeq = answer.lastSeq;
        // The primary cuts a batch short by bytes as well as by count, so only its last seq tells whether more is
        // waiting. It holds back entries not yet durable, which its last seq counts: an answer with nothing new ends
        // the round rather than asking again at once.
        if (v.meta.lastSeq === have || v.meta.lastSeq >= answer.lastSeq) break;
      }
      v.syncedAt = this.now();
      v.syncError = null;
      if (v.syncedAt - (v.savedSyncedAt ?? 0) >= SYNCED_SAVE_MS) this.saveSyncedAt(v);
    } catch (err) {
      if (err instanceof MetaError && err.code === 'CONFLICT') return this.setAsideDiverged(v, err);
      const msg = message(err);
      if (v.syncError !== msg) this.log.warn({ volume: v.name, err: msg }, 'dfs: following the primary\'s log failed; serving what is here');
      v.syncError = msg;
    }
  }

  /** installSnapshot, and after a failure the time to wait before the next (SNAPSHOT_RETRY_MS) in its message. */
  private async snapshotOrWait(v: HeldVolume, last: { primary: string; waitMs: number } | undefined): Promise<HeldVolume> {
    try {
      const now = await this.installSnapshot(v);
      this.snapshotWaits.delete(v.name);
      return now;
    } catch (err) {
      const waitMs = last?.primary === v.record.primary ? Math.min(SNAPSHOT_RETRY_MS.max, last.waitMs * 2) : SNAPSHOT_RETRY_MS.first;
      this.snapshotWaits.set(v.name, { primary: v.record.primary, waitMs, until: this.now() + waitMs });
      throw new Error(`${message(err)}; asking for another in ${Math.ceil(waitMs / 1000)} s`);
    }
  }

  /** Writes down when the follower last caught up, for `synced_at` after a restart. A failure costs only that. */
  private saveSyncedAt(v: HeldVolume): void {
    if (v.syncedAt === null || v.syncedAt === v.savedSyncedAt) return;
    try {
      writeFileAtomic(join(this.dataDir, 'volumes', v.name, SYNCED_FILE), `${v.syncedAt}\n`);
      v.savedSyncedAt = v.syncedAt;
    } catch (err) {
      this.log.warn({ volume: v.name, err: (err as Error).message }, 'dfs: could not write down when the volume last caught up');
    }
  }

  /**
   * Replaces this follower's copy with a snapshot of the primary's metadata: fetched into `<volume>.incoming`, synced,
   * checked (its SHA-256 and length as sent, SQLite's integrity checks, this volume's, the seq it was sent as), then
   * put in place of the copy, which is set aside (`<volume>.replaced-<ms>`, kept for whatever it holds that the
   * primary does not; an empty copy is just removed). A failure before that leaves the copy as it was; answers the
   * volume as now held.
   */
  private async installSnapshot(v: HeldVolume): Promise<HeldVolume> {
    const volumes = join(this.dataDir, 'volumes');
    const staging = join(volumes, `${v.name}.incoming`);
    let info: SnapshotInfo;
    try {
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging);
      const file = join(staging, 'meta.db');
      const sent = await this.peers.snapshot(v.record.primary, v.name, file, this.self, this.stopping.signal);
      info = await checkSnapshot(file, v.name);
      if (info.seq !== sent.seq) throw new Error(`it holds entries up to ${info.seq}, not up to ${sent.seq} as sent`);
      writeFileAtomic(join(staging, ROLE_FILE), 'follower\n');
      if (this.held.get(v.name) !== v) throw new Error('the copy was closed here meanwhile');
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw new Error(`catching up from a snapshot of the primary ${v.record.primary} failed; the copy here is kept as it was: ${message(err)}`);
    }
    const dir = join(volumes, v.name);
    const holds = v.meta.lastSeq > 0;
    v.meta.close();
    this.held.delete(v.name);
    let aside: string | null = null;
    try {
      if (holds) aside = this.setAside(v.name, 'replaced');
      else rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
      fsyncPath(volumes);
    } catch (err) {
      if (aside && !existsSync(dir)) renameSync(aside, dir);
      rmSync(staging, { recursive: true, force: true });
      this.hold(v.name, v.record);
      throw new Error(`installing the snapshot of the primary ${v.record.primary} failed; the copy here is kept as it was: ${message(err)}`);
    }
    this.log.info({ volume: v.name, seq: info.seq, kept: aside }, 'dfs: the primary no longer keeps the log this copy needed; caught up from its snapshot');
    this.hold(v.name, v.record);
    const now = this.held.get(v.name);
    if (!now) throw new Error(`the snapshot of the primary ${v.record.primary} is in place but cannot be opened`);
    return now;
  }

  /**
   * A follower's copy that no longer matches its primary's log is set aside, kept for whoever wants what it holds
   * (changes the primary never had), and the node follows again from an empty copy.
   */
  private setAsideDiverged(v: HeldVolume, err: MetaError): void {
    try {
      v.meta.close();
      this.held.delete(v.name);
      const aside = this.setAside(v.name, 'diverged');
      this.log.warn({ volume: v.name, err: err.message, kept: aside }, 'dfs: this node\'s copy of the volume went another way than its primary\'s; set aside to follow from the start');
    } catch (e) {
      this.log.error({ volume: v.name, err: (e as Error).message }, 'dfs: could not set aside a copy that went another way');
    }
    this.hold(v.name, v.record);
  }

  /** Closes every copy held here; a snapshot being downloaded is aborted (and what came of it removed). */
  close(): void {
    this.stopped = true;
    this.stopping.abort();
    if (this.timer) clearInterval(this.timer);
    if (this.retainTimer) clearInterval(this.retainTimer);
    this.timer = null;
    this.retainTimer = null;
    for (const v of this.held.values()) {
      if (v.role === 'follower') this.saveSyncedAt(v);
      v.meta.close();
    }
    this.held.clear();
  }
}
