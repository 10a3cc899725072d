// The scheduler's loop around derive(): read a snapshot, derive, and write the difference in one compare-and-swap
// transaction. Ticks run one at a time, on any change under the input prefixes (debounced) and at least every
// TICK_INTERVAL_MS, because heartbeats age without anything being written. A transaction that finds an owned key
// changed since it was read fails whole, and the next tick starts again from a fresh read: the scheduler never
// overwrites a write it has not seen.
import { MAX_TX_OPS, type systemConfigApi } from '../../lib/api/system-config.ts';
import { type Client, KrpcError } from '../../lib/krpc/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import type { ZoneBootConfig } from '../../lib/identity/documents.ts';
import { derive, planWrites, storeTime } from './derive.ts';
import { SnapshotReader } from './snapshot.ts';

export type SchedulerConfig = Pick<Client<typeof systemConfigApi.methods>, 'list' | 'get' | 'exec_tx' | 'watch'>;

/** Heartbeats arrive every 10 s by default; ticking as often bounds how late a dead instance is noticed. */
export const TICK_INTERVAL_MS = 10_000;
/** Long enough to take a node's burst of heartbeats (one write per service) as one change. */
const DEBOUNCE_MS = 200;
/** Prefixes whose changes can change the output. */
const WATCHED_PREFIXES = ['devices/', 'nodes/', 'services/', 'users/', 'storage/'] as const;

export interface TickResult {
  changes: { op: 'put' | 'delete'; key: string }[];
  /** Whether `changes` were written; false when there were none or the transaction lost a race. */
  written: boolean;
  revision: number | null;
  /** Keys someone else wrote between this tick's read and its transaction. */
  conflicts: string[];
}

export interface SchedulerStatus {
  last_tick_at: number | null;
  last_write_revision: number | null;
  ticks: number;
  writes: number;
  conflicts: number;
  last_error: string | null;
  problems: string[];
}

export interface SchedulerOptions {
  config: SchedulerConfig;
  boot: ZoneBootConfig;
  log: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  now?: () => number;
}

export class Scheduler {
  private readonly reader: SnapshotReader;
  private readonly now: () => number;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly stats: SchedulerStatus = {
    last_tick_at: null,
    last_write_revision: null,
    ticks: 0,
    writes: 0,
    conflicts: 0,
    last_error: null,
    problems: [],
  };
  private soon: NodeJS.Timeout | null = null;
  private interval: NodeJS.Timeout | null = null;

  constructor(private readonly opts: SchedulerOptions) {
    this.reader = new SnapshotReader(opts.config, opts.boot);
    this.now = opts.now ?? Date.now;
  }

  status(): SchedulerStatus {
    return { ...this.stats, problems: [...this.stats.problems] };
  }

  /** Runs one tick after any tick already running. */
  tick(): Promise<TickResult> {
    const run = this.queue.then(() => this.tickOnce());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async tickOnce(): Promise<TickResult> {
    const { config, log } = this.opts;
    try {
      const snapshot = await this.reader.read();
      const at = this.now();
      const output = derive(snapshot.input, storeTime(snapshot.input.instances, at));
      const plan = planWrites(snapshot.owned, output);
      this.stats.ticks++;
      this.stats.last_tick_at = at;
      this.stats.last_error = null;
      const problems = [...snapshot.problems, ...output.problems];
      if (JSON.stringify(problems) !== JSON.stringify(this.stats.problems)) {
        if (problems.length > 0) log.warn({ problems }, 'scheduler input it cannot honour');
        this.stats.problems = problems;
      }
      const changes = plan.ops.map((o) => ({ op: o.op === 'delete' ? ('delete' as const) : ('put' as const), key: o.key }));
      if (plan.ops.length === 0) return { changes, written: false, revision: null, conflicts: [] };
      if (plan.ops.length > MAX_TX_OPS) {
        throw new KrpcError('FAILED_PRECONDITION', `${plan.ops.length} keys to change, more than one transaction takes (${MAX_TX_OPS})`);
      }
      const r = await config.exec_tx({ compares: plan.compares, ops: plan.ops });
      if (!r.succeeded) {
        this.stats.conflicts++;
        log.info({ conflicts: r.conflicts }, 'scheduler write lost a race; re-reading');
        return { changes, written: false, revision: null, conflicts: r.conflicts };
      }
      this.stats.writes++;
      this.stats.last_write_revision = r.revision;
      log.info({ revision: r.revision, changes }, 'scheduler wrote its intent');
      return { changes, written: true, revision: r.revision, conflicts: [] };
    } catch (err) {
      this.stats.last_error = (err as Error).message;
      throw err;
    }
  }

  /** Ticks now and whenever the inputs change or TICK_INTERVAL_MS passes, until `signal` aborts. */
  run(signal: AbortSignal): void {
    this.schedule(0);
    this.interval = setInterval(() => this.schedule(0), TICK_INTERVAL_MS);
    signal.addEventListener('abort', () => {
      if (this.interval) clearInterval(this.interval);
      if (this.soon) clearTimeout(this.soon);
    }, { once: true });
    for (const prefix of WATCHED_PREFIXES) void this.follow(prefix, signal);
  }

  private conflictsInRow = 0;

  private schedule(delayMs: number): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.tick().then(
        (r) => {
          // Lost a race: read again soon, backing off while it keeps happening (two schedulers that disagree, or
          // a conflict that does not clear) so the store is not hammered.
          if (r.conflicts.length === 0) this.conflictsInRow = 0;
          else this.schedule(Math.min(DEBOUNCE_MS * 2 ** this.conflictsInRow++, TICK_INTERVAL_MS));
        },
        (err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'scheduler tick failed; retrying on the next change or interval'),
      );
    }, delayMs);
  }

  private async follow(prefix: string, signal: AbortSignal): Promise<void> {
    const { config, log } = this.opts;
    let rev = 0;
    while (!signal.aborted) {
      try {
        if (rev === 0) {
          rev = (await config.list({ prefix, limit: 1, keys_only: true })).revision;
          // Whatever changed while this prefix was not watched is in the next tick's read.
          this.schedule(DEBOUNCE_MS);
        }
        const w = await config.watch({ prefix, after_revision: rev, timeout_ms: 25_000 }, { timeoutMs: 35_000 });
        rev = w.revision;
        // Its own transaction comes back through the watch; only someone else's write is news.
        if (w.events.some((e) => e.revision !== this.stats.last_write_revision)) this.schedule(DEBOUNCE_MS);
      } catch (err) {
        if (signal.aborted) return;
        log.warn({ prefix, err: (err as Error).message }, 'scheduler watch failed; re-listing');
        rev = 0;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}
