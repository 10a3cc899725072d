// The volumes this node keeps metadata for (docs/dcfs.md, "Volumes on nodes"): as primary it owns the volume's
// metadata and its log; as follower it pulls the primary's log every second and applies it, so it can serve reads
// when cut off. A node with no role in a volume keeps nothing and forwards to the primary.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import type { Logger } from '../../lib/log/logger.ts';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import type { PeerChunks } from './peers.ts';
import { type LogEntry, MetaError, VolumeMeta } from './volume-meta.ts';

export interface HeldVolume {
  name: string;
  record: VolumeRecord;
  role: 'primary' | 'follower';
  meta: VolumeMeta;
  /** Followers: the primary's last sequence number as it last answered, when the last pull succeeded, and why the
   * last one failed (null once one succeeds). */
  primarySeq: number | null;
  syncedAt: number | null;
  syncError: string | null;
}

const PULL_MS = 1000;
const PULL_BATCH = 1000;

/** Beside a volume's metadata: the role this node last opened it in. */
const ROLE_FILE = 'role';

function lastRole(dir: string): string | null {
  return readTextIfExists(join(dir, ROLE_FILE))?.trim() ?? null;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}


export class VolumeSet {
  private readonly held = new Map<string, HeldVolume>();
  private timer: NodeJS.Timeout | null = null;
  private pulling = false;
  private stopped = false;

  constructor(
    private readonly self: string,
    private readonly dataDir: string,
    private readonly peers: PeerChunks,
    private readonly log: Logger,
  ) {}

  /** Opens the metadata of volumes this node now has a role in, closes the others. */
  sync(volumes: ReadonlyMap<string, VolumeRecord>): void {
    for (const [name, v] of this.held) {
      const rec = volumes.get(name);
      const role = rec ? this.roleIn(rec) : null;
      if (role !== v.role) {
        v.meta.close();
        this.held.delete(name);
        this.log.info({ volume: name, was: v.role }, 'dfs: no longer holding volume metadata');
      } else v.record = rec!;
    }
    for (const [name, rec] of volumes) if (!this.held.has(name)) this.hold(name, rec);
    if (!this.timer && !this.stopped) this.timer = setInterval(() => void this.pullAll(), PULL_MS);
  }

  private hold(name: string, rec: VolumeRecord): void {
    const role = this.roleIn(rec);
    if (!role) return;
    try {
      const dir = this.metadataDir(name, role);
      const meta = VolumeMeta.open(join(dir, 'meta.db'), { volume: name, role, keepVersions: rec.keep_versions });
      this.held.set(name, { name, record: rec, role, meta, primarySeq: null, syncedAt: null, syncError: null });
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
  private setAside(name: string, why: 'retired' | 'diverged'): string {
    const volumes = join(this.dataDir, 'volumes');
    const aside = join(volumes, `${name}.${why}-${Date.now()}`);
    renameSync(join(volumes, name), aside);
    fsyncDir(volumes);
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

  /** One round of log shipping for every followed volume; a round still running is not doubled. */
  async pullAll(): Promise<void> {
    if (this.pulling) return;
    this.pulling = true;
    try {
      // A snapshot: a copy set aside during the round is replaced in `held`, and its replacement waits for the next.
      for (const v of [...this.held.values()]) if (v.role === 'follower') await this.pull(v);
    } finally {
      this.pulling = false;
    }
  }

  private async pull(v: HeldVolume): Promise<void> {
    try {
      for (;;) {
        // From the last entry held here, not after it: apply() checks that entry against the primary's, so a copy
        // that went another way (a lagging follower promoted, the primary's metadata made anew) is caught instead of
        // taking the primary's later entries onto a different tree.
        const have = v.meta.lastSeq;
        const answer = await this.peers.log(v.record.primary, v.name, Math.max(0, have - 1), PULL_BATCH);
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
      v.syncedAt = Date.now();
      v.syncError = null;
    } catch (err) {
      if (err instanceof MetaError && err.code === 'CONFLICT') return this.setAsideDiverged(v, err);
      const msg = err instanceof MetaError ? `${err.code}: ${err.message}` : (err as Error).message;
      if (v.syncError !== msg) this.log.warn({ volume: v.name, err: msg }, 'dfs: following the primary\'s log failed; serving what is here');
      v.syncError = msg;
    }
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

  close(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const v of this.held.values()) v.meta.close();
    this.held.clear();
  }
}
