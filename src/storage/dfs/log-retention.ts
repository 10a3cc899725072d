// How much of a volume's metadata log a node keeps (docs/dcfs.md, "The log"). The primary keeps every entry a
// follower of the volume still needs, judged by where each follower last said it stands (the `after` of its log
// pulls), and the most recent `keepEntries` whatever they say; a follower not heard from for longer than the
// retention window holds nothing back, and catches up from a snapshot when it returns. A follower keeps what its
// primary keeps, so that once promoted it holds what the other followers need.
import { z } from 'zod';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import { DEVICE_NAME } from '../../lib/identity/names.ts';
import { readTextIfExists } from '../../lib/read-if-exists.ts';

export interface RetentionConfig {
  /** A follower silent for longer than this (ms) no longer holds back its primary's log. */
  windowMs: number;
  /** The most recent entries every copy keeps, whatever the followers' positions. At least 1: a follower's last entry
   * is what its next pull is compared against. */
  keepEntries: number;
}

/**
 * The node config's defaults (`dfs_log_retention_s`, `dfs_log_keep_entries`). A week covers a device switched off for
 * a holiday or a repair: it comes back to the log, not to a whole snapshot. 10,000 entries cover a follower restarting
 * during a burst of writes (a folder of small files uploaded) and cost a few megabytes of typical entries.
 */
export const DEFAULT_RETENTION: RetentionConfig = { windowMs: 7 * 86_400_000, keepEntries: 10_000 };

/** Where a follower stands as its primary last heard: it asked for the entries after `seq` at `at` (ms). `seq` null:
 * not heard from since it was first seen among the volume's followers (at `at`) by this primary. */
export interface FollowerPosition {
  seq: number | null;
  at: number;
}

/**
 * The seq through which a primary may drop its log: never past the last `keepEntries`, nor past what any follower of
 * the volume heard from within the window still needs (the entries after its position); a follower whose position is
 * not known holds the whole log until it reports or its window runs out. At least `logStart` (nothing to drop).
 */
export function primaryTruncation(
  a: { lastSeq: number; logStart: number; followers: readonly string[]; positions: ReadonlyMap<string, FollowerPosition>; now: number },
  cfg: RetentionConfig,
): number {
  let through = a.lastSeq - cfg.keepEntries;
  for (const node of a.followers) {
    const p = a.positions.get(node);
    if (p && a.now - p.at > cfg.windowMs) continue;
    through = Math.min(through, p?.seq ?? a.logStart);
  }
  return Math.max(a.logStart, through);
}

/** The seq through which a follower may drop its own log: what its primary dropped (as it last answered; nothing
 * while that is not known), keeping its own last `keepEntries`. */
export function followerTruncation(a: { lastSeq: number; logStart: number; primaryLogStart: number | null }, cfg: RetentionConfig): number {
  if (a.primaryLogStart === null) return a.logStart;
  return Math.max(a.logStart, Math.min(a.primaryLogStart, a.lastSeq - cfg.keepEntries));
}

const positionsSchema = z.record(
  z.string().regex(DEVICE_NAME),
  z.object({ seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).nullable(), at: z.number().int().nonnegative() }).strict(),
);

/**
 * A primary's record of its followers' positions, kept in a file beside the volume's metadata (saved before every
 * truncation and once a retention round otherwise), so that a restart neither forgets a follower that is away (its
 * window goes on from when it was last heard) nor truncates what it needs: a follower's position only moves on while
 * it follows, so the one saved is at most where it stands. One that went back since (its copy set aside) asks from
 * there, and takes a snapshot if the log no longer reaches back so far.
 */
export class FollowerPositions {
  private readonly map = new Map<string, FollowerPosition>();
  private dirty = false;
  /** Why the saved positions could not be read (then every follower counts as not heard from), or null. */
  readonly problem: string | null = null;

  constructor(private readonly file: string) {
    const text = readTextIfExists(file);
    if (text === null) return;
    try {
      for (const [node, p] of Object.entries(positionsSchema.parse(JSON.parse(text)))) this.map.set(node, p);
    } catch (err) {
      this.problem = `${file}: ${(err as Error).message.slice(0, 300)}`;
    }
  }

  get positions(): ReadonlyMap<string, FollowerPosition> {
    return this.map;
  }

  /** `node` asked for the entries after `seq`: it needs those. */
  heard(node: string, seq: number, now: number): void {
    this.map.set(node, { seq, at: now });
    this.dirty = true;
  }

  /** Keeps positions of exactly `followers`: one newly among them is not heard from as of `now`. */
  track(followers: readonly string[], now: number): void {
    for (const node of this.map.keys()) {
      if (!followers.includes(node)) {
        this.map.delete(node);
        this.dirty = true;
      }
    }
    for (const node of followers) {
      if (!this.map.has(node)) {
        this.map.set(node, { seq: null, at: now });
        this.dirty = true;
      }
    }
  }

  /** Writes the positions durably if they changed since the last save. */
  save(): void {
    if (!this.dirty) return;
    writeFileAtomic(this.file, `${JSON.stringify(Object.fromEntries(this.map))}\n`);
    this.dirty = false;
  }
}
