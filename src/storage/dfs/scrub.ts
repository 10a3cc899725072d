// Keeping data intact (docs/dcfs.md, "Scrub and repair"): scrub reads every chunk on this node's disks at a limited
// rate and checks its hash; a corrupt or missing chunk is fetched from a healthy copy and written back. On a volume's
// primary, re-replication walks every chunk the volume names and gives each one the copies its policy asks for again
// when a disk or node was lost, damaged or drained.
import type { Logger } from '../../lib/log/logger.ts';
import type { PlacementPolicy } from '../../lib/config/storage-records.ts';
import type { ChunkIO } from './chunk-io.ts';
import { type DiskRef, domainOf, rebalanceMove } from './placement.ts';
import type { DiskSet } from './disks.ts';
import type { VolumeSet } from './volumes.ts';
import type { ZoneStorage } from './zone-view.ts';

export interface ScrubState {
  running: boolean;
  checked: number;
  corrupt: number;
  missing: number;
  repaired: number;
  /** Chunks the last re-replication pass found with fewer copies than their policy (and could not yet fix). */
  under_replicated: number;
  /** Copies moved to even out disks since the service started. */
  rebalanced: number;
}

/** Copies moved per pass and volume: rebalancing trickles, it never competes with the users' own traffic. */
const REBALANCE_MOVES_PER_PASS = 64;

export interface ScrubOptions {
  /** Bytes read per second by scrub, so it never crowds out the users' own reads. */
  bytesPerSecond: number;
  /** How often a full scrub starts by itself. */
  intervalMs: number;
  /** How often re-replication runs on volumes this node is primary for. */
  replicateEveryMs: number;
}

export const DEFAULT_SCRUB: ScrubOptions = { bytesPerSecond: 64 * 1024 * 1024, intervalMs: 24 * 3600 * 1000, replicateEveryMs: 30_000 };

/** The strictest of a volume's policies: re-replication does not know a chunk's folder, so it keeps every chunk of
 * the volume at the most copies any policy of it asks for. */
export function strictestPolicy(v: ZoneStorage['volumes'] extends Map<string, infer R> ? R : never): PlacementPolicy {
  let best = v.policy;
  for (const p of Object.values(v.folders)) {
    if (p.copies > best.copies || (p.copies === best.copies && p.failure_domain === 'node')) best = p;
  }
  return best;
}

export class Scrubber {
  private s: ScrubState = { running: false, checked: 0, corrupt: 0, missing: 0, repaired: 0, under_replicated: 0, rebalanced: 0 };
  private timers: NodeJS.Timeout[] = [];
  private replicating = false;
  private stopped = false;

  constructor(
    private readonly disks: DiskSet,
    private readonly io: ChunkIO,
    private readonly volumes: VolumeSet,
    private readonly zone: () => ZoneStorage,
    private readonly log: Logger,
    private readonly opts: ScrubOptions = DEFAULT_SCRUB,
  ) {}

  state(): ScrubState {
    return { ...this.s };
  }

  /** Starts the periodic scrub and re-replication. */
  run(): void {
    this.timers.push(setInterval(() => this.start(), this.opts.intervalMs).unref());
    this.timers.push(setInterval(() => void this.replicate(), this.opts.replicateEveryMs).unref());
  }

  /** Starts a scrub of this node's disks (or one) unless one is running; answers whether it started. */
  start(diskId?: string): boolean {
    if (this.s.running || this.stopped) return false;
    this.s = { ...this.s, running: true, checked: 0, corrupt: 0, missing: 0, repaired: 0 };
    void this.scrub(diskId)
      .catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'dfs: scrub failed'))
      .finally(() => (this.s.running = false));
    return true;
  }

  private async scrub(diskId?: string): Promise<void> {
    const started = Date.now();
    let budgetStart = Date.now();
    let bytesSince = 0;
    for (const d of this.disks.open()) {
      if (diskId && d.id !== diskId) continue;
      for await (const id of d.store.list()) {
        if (this.stopped) return;
        let result: 'ok' | 'corrupt' | 'missing';
        try {
          result = await d.store.verify(id);
        } catch (err) {
          // An unreadable chunk is as good as missing: it must come back from a healthy copy.
          this.log.warn({ disk: d.id, chunk: id, err: (err as Error).message }, 'dfs: scrub could not read a chunk');
          result = 'missing';
        }
        this.s.checked++;
        if (result !== 'ok') {
          this.s[result]++;
          if (await this.repair(d.id, id)) {
            this.s.repaired++;
            d.repairs++;
          }
        }
        // Chunks average about 256 KiB; the rate is a budget, not an exact figure.
        bytesSince += 256 * 1024;
        const due = (bytesSince / this.opts.bytesPerSecond) * 1000 - (Date.now() - budgetStart);
        if (due > 0) await new Promise((r) => setTimeout(r, due));
        if (Date.now() - budgetStart > 10_000) {
          budgetStart = Date.now();
          bytesSince = 0;
        }
      }
      d.last_scrub_at = Date.now();
    }
    this.log.info({ ms: Date.now() - started, ...this.s }, 'dfs: scrub finished');
  }

  /** Writes a healthy copy of `id` back onto `diskId` of this node. */
  private async repair(diskId: string, id: string): Promise<boolean> {
    const d = this.disks.get(diskId);
    if (!d?.store) return false;
    try {
      const data = await this.io.fetch(id);
      // Written over, never deleted first: a copy that could not be read may be the only one, and a put that then
      // failed (the disk refusing writes, full) or a crash between the two would lose it. `replace` because an I/O
      // error leaves the copy counted as sound, and a plain put would take it as stored already.
      await d.store.put(id, data, { replace: true });
      this.log.warn({ disk: diskId, chunk: id }, 'dfs: repaired a chunk from a healthy copy');
      return true;
    } catch (err) {
      this.log.error({ disk: diskId, chunk: id, err: (err as Error).message }, 'dfs: a damaged chunk could not be repaired');
      return false;
    }
  }

  /**
   * One pass over the volumes this node is primary for: every chunk named by any version gets its policy's copies on
   * usable disks (draining disks, dead nodes and damaged copies do not count). Runs one pass at a time.
   */
  async replicate(): Promise<number> {
    if (this.replicating || this.stopped) return this.s.under_replicated;
    this.replicating = true;
    let short = 0;
    let drained = 0;
    try {
      const z = this.zone();
      for (const v of this.volumes.all()) {
        if (v.role !== 'primary') continue;
        const rec = z.volumes.get(v.name);
        if (!rec) continue;
        const policy = strictestPolicy(rec);
        const infos = await this.io.diskInfos();
        const usable = new Set(infos.filter((i) => i.live && i.state === 'active').map((i) => `${i.node}/${i.disk}`));
        const draining = new Set(infos.filter((i) => i.live && i.state === 'draining').map((i) => `${i.node}/${i.disk}`));
        let moves = 0;
        for (let after = ''; ; ) {
          const batch = v.meta.chunkIds(after, 1000);
          if (batch.length === 0) break;
          after = batch[batch.length - 1]!.id;
          const where = await this.io.locate(batch.map((c) => c.id));
          for (const c of batch) {
            if (this.stopped) return short;
            const have = (where.get(c.id) ?? []).filter((r) => usable.has(`${r.node}/${r.disk}`));
            const domains = new Set(have.map((r) => domainOf(policy, r)));
            if (domains.size >= policy.copies) {
              // A copy on a draining disk counts for nothing, so once the others meet the policy it goes: that is how
              // a draining disk empties, to be forgotten (`buckyos fs disk rm` again) when it holds nothing.
              for (const r of (where.get(c.id) ?? []).filter((x) => draining.has(`${x.node}/${x.disk}`))) {
                try {
                  if (await this.io.dropIfCovered(r, c.id, policy)) drained++;
                } catch (err) {
                  this.log.warn({ chunk: c.id, from: r, err: (err as Error).message }, 'dfs: a copy on a draining disk could not be dropped yet');
                }
              }
              if (moves < REBALANCE_MOVES_PER_PASS && (await this.rebalance(c.id, c.size, policy, have))) moves++;
              continue;
            }
            try {
              const data = await this.io.fetch(c.id);
              await this.io.store(c.id, data, policy, have);
              this.log.info({ volume: v.name, chunk: c.id, had: domains.size, wants: policy.copies }, 'dfs: re-replicated a chunk');
            } catch (err) {
              short++;
              this.log.warn({ volume: v.name, chunk: c.id, err: (err as Error).message }, 'dfs: a chunk stays below its policy for now');
            }
          }
        }
      }
      this.s.under_replicated = short;
      if (drained > 0) this.log.info({ copies: drained }, 'dfs: dropped copies from draining disks, kept elsewhere under their policy');
      return short;
    } finally {
      this.replicating = false;
    }
  }

  /**
   * Moves one copy of a chunk that is in place from a clearly fuller disk to an emptier one (a disk just added, say):
   * the new copy is durable before the old one goes, so the chunk never has fewer copies than its policy.
   */
  private async rebalance(id: string, size: number, policy: PlacementPolicy, have: DiskRef[]): Promise<boolean> {
    const move = rebalanceMove({ size, policy, disks: await this.io.diskInfos(), have });
    if (!move) return false;
    try {
      await this.io.copyTo(move.to, id, await this.io.fetch(id));
      // The same chunk may belong to volumes with other primaries, moving it at the same time from another disk to the
      // same emptier one: the node holding the source drops it only if the copies left still meet the policy.
      if (!(await this.io.dropIfCovered(move.from, id, policy))) {
        this.log.info({ chunk: id, from: move.from }, 'dfs: a copy stays where it was: without it the chunk would fall below its policy');
        return false;
      }
      this.s.rebalanced++;
      return true;
    } catch (err) {
      this.log.warn({ chunk: id, from: move.from, to: move.to, err: (err as Error).message }, 'dfs: moving a copy failed; it stays where it was');
      return false;
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
  }
}
