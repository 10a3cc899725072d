// Shared pieces of the benchmarks: a closed-loop load generator, percentiles and plain-text tables.
import { cpus, loadavg } from 'node:os';

/** The machine as a result should be read against. The load average shows whether something else was running:
 * benchmarks on a shared machine compete with whatever else is on it. */
export function machineLine(): string {
  const [one, five] = loadavg();
  return `node ${process.version}, ${cpus().length} cores, load average ${one.toFixed(2)} (1 min) ${five.toFixed(2)} (5 min)`;
}

/** One timed stretch of load: its wall time and every operation's latency. */
export interface LoadSample {
  seconds: number;
  latenciesMs: number[];
}

export interface LoadResult {
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Keeps `concurrency` operations in flight for `durationMs`: each worker starts its next operation as soon as its
 * previous one finished (closed loop), so both sides of a comparison see the same offered concurrency. `op` gets a
 * running sequence number. Any failed operation fails the run: a benchmark that counts errors as throughput lies.
 */
export async function closedLoop(
  op: (seq: number) => Promise<unknown>,
  opts: { concurrency: number; durationMs: number },
): Promise<LoadSample> {
  const latencies: number[] = [];
  let seq = 0;
  const started = process.hrtime.bigint();
  const end = Date.now() + opts.durationMs;
  const worker = async () => {
    while (Date.now() < end) {
      const t0 = process.hrtime.bigint();
      await op(seq++);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, latenciesMs: latencies };
}

/** Pools samples taken in separate stretches (rounds) into one result. */
export function summarize(samples: readonly LoadSample[]): LoadResult {
  const latencies = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  const seconds = samples.reduce((sum, s) => sum + s.seconds, 0);
  return {
    ops: latencies.length,
    seconds,
    opsPerSec: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

/** Runs `op` over `count` sequence numbers with `concurrency` in flight; for filling a key space before measuring. */
export async function forEachConcurrent(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Left-aligned first column, right-aligned others. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
