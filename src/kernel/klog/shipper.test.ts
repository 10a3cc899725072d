import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { LogRecordIn } from '../../lib/api/klog.ts';
import { type Logger, createLogger } from '../../lib/log/logger.ts';
import { createLogShipper, lineToRecord } from '../../lib/log/shipper.ts';
import { KlogStore, type StoredLogRecord } from './store.ts';

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** pino's flush() returns at once on the rotating stream (SonicBoom with minLength 0), so count what reached disk. */
function linesOnDisk(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += readFileSync(join(dir, f), 'utf8').split('\n').length - 1;
  return n;
}

/** The rotating stream holds a file descriptor until it closes. */
function closeLogger(log: Logger): void {
  (log as unknown as Record<symbol, { end(): void }>)[pino.symbols.streamSym].end();
}

describe('log shipper', () => {
  let dir: string;
  let logsDir: string;
  let stateFile: string;
  let store: KlogStore;
  const loggers: Logger[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'klog-ship-'));
    logsDir = join(dir, 'logs');
    stateFile = join(dir, 'run', 'log-shipper.json');
    store = new KlogStore({ path: join(dir, 'klog.db') });
  });
  afterEach(() => {
    for (const l of loggers.splice(0)) closeLogger(l);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function logger(service: string): Promise<Logger> {
    // 2 KiB files: a few dozen lines each, so every test crosses several rotations.
    const l = await createLogger({ service, logsDir, maxBytes: 2048, keepFiles: 1000 });
    loggers.push(l);
    return l;
  }

  const all = (): StoredLogRecord[] => store.query({ limit: 5000 }).reverse();

  function assertExactlyOnce(expected: string[]): void {
    const counts = new Map<string, number>();
    for (const r of all()) counts.set(r.msg, (counts.get(r.msg) ?? 0) + 1);
    for (const m of expected) assert.equal(counts.get(m), 1, `"${m}" delivered ${counts.get(m) ?? 0} times`);
    assert.equal(all().length, expected.length);
  }

  it('delivers every line of rotating pino logs exactly once across failed sends, lost acks and restarts', async () => {
    const alpha = await logger('alpha');
    const beta = await logger('beta');
    const expected: string[] = [];
    const count = { alpha: 0, beta: 0 };
    const write = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        alpha.info({ i, password: 'hunter2', trace: `tr${i}` }, `alpha ${i}`);
        expected.push(`alpha ${i}`);
        count.alpha++;
        if (i % 3 === 0) {
          beta.warn({ i }, `beta ${i}`);
          expected.push(`beta ${i}`);
          count.beta++;
        }
        // The stream rotates once a write completes, so pauses between bursts are what make it rotate often.
        if (i % 8 === 7) await new Promise((r) => setTimeout(r, 5));
      }
      await until(() => linesOnDisk(join(logsDir, 'alpha')) === count.alpha && linesOnDisk(join(logsDir, 'beta')) === count.beta, 'log lines on disk');
    };
    await write(0, 150);
    assert.ok(readdirSync(join(logsDir, 'alpha')).length >= 5, 'alpha rotated into several files');

    let mode: 'down' | 'ack-lost' | 'up' = 'down';
    let calls = 0;
    const batchIds: string[] = [];
    // klog's real store behind the send; "ack-lost" stores the batch and then fails, as a timed-out HTTP call would.
    const send = async (records: LogRecordIn[], batchId: string) => {
      calls++;
      batchIds.push(batchId);
      if (mode === 'down') throw new Error('klog unreachable');
      store.append(records, batchId);
      if (mode === 'ack-lost') throw new Error('answer lost');
    };
    const opts = { logsDir, node: 'n1', send, stateFile, intervalMs: 10, maxBackoffMs: 40 };

    const first = createLogShipper(opts);
    await until(() => calls >= 3, 'retries while klog is down');
    assert.equal(all().length, 0);
    assert.equal(new Set(batchIds).size, 1, 'a failed batch is retried under the same id');
    mode = 'ack-lost';
    await until(() => all().length > 0 && calls >= 6, 'a batch stored whose acknowledgement was lost');
    await first.stop();
    const inflight = JSON.parse(readFileSync(stateFile, 'utf8')).inflight;
    assert.ok(inflight, 'the unacknowledged batch is recorded as in flight');

    await write(150, 300);
    mode = 'up';
    const second = createLogShipper(opts);
    await second.flush();
    assert.ok(batchIds.filter((id) => id === inflight.id).length >= 2, 'the in-flight batch was resent under its id');
    assertExactlyOnce(expected);

    await write(300, 400);
    await second.stop();
    const third = createLogShipper(opts);
    await third.flush();
    await third.stop();
    assertExactlyOnce(expected);

    const a7 = all().find((r) => r.msg === 'alpha 7')!;
    assert.equal(a7.service, 'alpha');
    assert.equal(a7.node, 'n1');
    assert.equal(a7.level, 'info');
    assert.equal(a7.trace, 'tr7');
    assert.deepEqual({ ...a7.fields, pid: 0 }, { i: 7, password: '[redacted]', pid: 0 });
    assert.equal(all().find((r) => r.msg === 'beta 9')!.level, 'warn');
    const alphaOrder = all().filter((r) => r.service === 'alpha').map((r) => Number(r.msg.split(' ')[1]));
    assert.deepEqual(alphaOrder, [...alphaOrder].sort((x, y) => x - y), 'lines of one service arrive in order');
  });

  it('ships non-JSON lines as info, a rotated file\'s last unterminated line, and holds the live file\'s partial line', async () => {
    const legacy = join(logsDir, 'legacy');
    mkdirSync(legacy, { recursive: true });
    writeFileSync(join(legacy, 'legacy.1.log'), 'plain text line\n\n{"level":50,"time":1700000000000,"msg":"json error"}\ncut off by a crash');
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(legacy, 'legacy.1.log'), old, old);
    writeFileSync(join(legacy, 'legacy.2.log'), '[1,2]\nhalf a li');
    const shipped: LogRecordIn[] = [];
    const shipper = createLogShipper({ logsDir, node: 'n2', stateFile, intervalMs: 10, send: async (r) => void shipped.push(...r) });
    await shipper.flush();
    assert.deepEqual(shipped.map((r) => [r.level, r.msg]), [
      ['info', 'plain text line'], ['error', 'json error'], ['info', 'cut off by a crash'], ['info', '[1,2]'],
    ]);
    assert.equal(shipped[1].ts, 1700000000000);
    appendFileSync(join(legacy, 'legacy.2.log'), 'ne\n');
    await shipper.flush();
    await shipper.stop();
    assert.equal(shipped.at(-1)!.msg, 'half a line');
    assert.equal(shipped.length, 5);
  });

  it('starts a file over when its inode now holds different content', async () => {
    const svc = join(logsDir, 'svc');
    mkdirSync(svc, { recursive: true });
    const file = join(svc, 'svc.1.log');
    writeFileSync(file, 'first generation a\nfirst generation b\n');
    const ino = statSync(file).ino;
    const shipped: string[] = [];
    const opts = { logsDir, node: 'n1', stateFile, intervalMs: 10, send: async (r: LogRecordIn[]) => void shipped.push(...r.map((x) => x.msg)) };
    const a = createLogShipper(opts);
    await a.flush();
    await a.stop();
    // Same inode, new content longer than the old offset: what a reused inode looks like to the shipper.
    writeFileSync(file, 'second generation, a longer first line\nsecond b\n');
    assert.equal(statSync(file).ino, ino);
    const b = createLogShipper(opts);
    await b.flush();
    await b.stop();
    assert.deepEqual(shipped, ['first generation a', 'first generation b', 'second generation, a longer first line', 'second b']);
  });

  it('truncates oversized messages and fields to klog\'s bounds instead of failing the batch', () => {
    const r = lineToRecord(JSON.stringify({ level: 30, time: 5, msg: 'm'.repeat(10_000), blob: 'b'.repeat(20_000) }), 'svc', 'n1');
    assert.equal(r.msg.length, 8192);
    assert.deepEqual(r.fields, { fields_truncated: true, original_bytes: 20_011 });
    assert.equal(lineToRecord('{"level":35,"msg":"x","trace":"not a valid trace!"}', 's', 'n').fields?.trace, 'not a valid trace!');
  });
});
