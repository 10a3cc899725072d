// Retrying a step that must eventually hold (a boot, a first publication), for a process nothing else would restart.
import { setTimeout as delay } from 'node:timers/promises';

export interface RetryOptions {
  /** The wait after the first failure; it doubles after each further one. */
  firstMs: number;
  /** The longest wait between attempts. */
  maxMs: number;
  /** Ends the loop: no attempt starts after it, and a wait in progress ends at once. */
  signal: AbortSignal;
  /** Told of each failure and the wait before the next attempt; awaited, so it may clean up after the attempt. */
  onFailure(err: Error, retryMs: number): void | Promise<void>;
}

/** Calls `attempt` until it resolves, and answers its result; undefined when `signal` ended the loop first. */
export async function retryUntilDone<T>(attempt: () => Promise<T>, opts: RetryOptions): Promise<T | undefined> {
  if (!(opts.firstMs > 0 && opts.firstMs <= opts.maxMs)) throw new RangeError(`retry needs 0 < firstMs <= maxMs, got ${opts.firstMs} and ${opts.maxMs}`);
  for (let wait = opts.firstMs; !opts.signal.aborted; wait = Math.min(wait * 2, opts.maxMs)) {
    try {
      return await attempt();
    } catch (err) {
      if (opts.signal.aborted) return undefined;
      await opts.onFailure(err instanceof Error ? err : new Error(String(err)), wait);
      await delay(wait, undefined, { signal: opts.signal }).catch(() => undefined);
    }
  }
  return undefined;
}
