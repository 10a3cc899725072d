// dcfs-lite over WebDAV against `rclone serve webdav` on a plain directory of the same disk, driven by the same
// client code in one run: a real single-device zone (the built daemon, dfs started by the scheduler once a disk and a
// volume exist, reached on its LAN listener as a WebDAV client on the home network reaches it) beside rclone, both
// with Basic auth. Large files: 1 GiB of pseudo-random bytes streamed up with PUT and down with GET, the sides alternating.
// Small files: 10,000 files of 4 KiB with 16 PUTs in flight, then read back. Dedup: the same 1 GiB stored twice under
// two names, measured as what the disk directory grew by. The dfs process's memory is sampled throughout.
//
// rclone writes into the page cache and never fsyncs; dfs acknowledges a PUT only once the file's chunks and its
// metadata are durable. The ratios compare what each server acknowledges; the table also shows rclone's uploads made
// durable afterwards (an fdatasync of the large file, a syncfs after the small ones) and, once, dfs reached through
// the node gateway (as from another device or an app), so the cost of durability and of the extra HTTP hop can be
// told apart.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, lstatSync, rmSync, mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent, request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activateDevice } from '../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../src/lib/identity/mnemonic.ts';
import { startZone, type TestZone } from '../test/support/zone.ts';
import { freePort } from '../test/support/ports.ts';
import { ensureBuilt } from './support/build.ts';
import { fmt, forEachConcurrent, machineLine, table } from './support/measure.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
// Development knobs (e.g. DFS_BENCH_LARGE_MIB=256 for a quick look); the documented figures use the defaults.
const LARGE_BYTES = Number(process.env.DFS_BENCH_LARGE_MIB ?? 1024) * MiB;
const LARGE_ROUNDS = Number(process.env.DFS_BENCH_LARGE_ROUNDS ?? 3);
const SMALL_FILES = Number(process.env.DFS_BENCH_SMALL_FILES ?? 10_000);
const SMALL_ROUNDS = Number(process.env.DFS_BENCH_SMALL_ROUNDS ?? 2);
const SMALL_BYTES = 4096;
const CONCURRENCY = 16;
const BLOCK = MiB;

const TARGET_LARGE = 0.8;
const TARGET_SMALL = 1.0;
const TARGET_SMALL_RATE = 1000;
const TARGET_DEDUP = 1.05;

const ZONE = 'bench.example.com';
const OWNER = 'alice';
const PASSWORD = 'correct-Horse-battery-9';
const VOLUME = 'bench';
const RCLONE = process.env.RCLONE_BIN ?? '/usr/bin/rclone';

type SideName = 'dfs' | 'rclone';

/** One WebDAV server as the client sees it: where the owner's files go, with its own connection pool. */
interface Side {
  name: SideName;
  host: string;
  port: number;
  base: string;
  agent: Agent;
}

const AUTH = `Basic ${Buffer.from(`${OWNER}:${PASSWORD}`).toString('base64')}`;

/**
 * Deterministic pseudo-random bytes (AES-128-CTR over zeros, keyed by `seed`), so one seed is the same content on both
 * sides and for the second copy of the dedup test, without 1 GiB held anywhere, and no stretch repeats within a file
 * (which dedup would otherwise collapse).
 */
function contentStream(seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(`dfs-webdav bench ${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const zeros = Buffer.alloc(BLOCK);
  return (n) => cipher.update(zeros.subarray(0, n));
}

function sendRequest(
  side: Side,
  method: string,
  path: string,
  opts: { headers?: Record<string, string | number>; body?: Buffer; stream?: { size: number; seed: string; hash?: ReturnType<typeof createHash> } } = {},
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: AUTH, ...opts.headers };
    if (opts.body) headers['content-length'] = opts.body.length;
    if (opts.stream) headers['content-length'] = opts.stream.size;
    const req = request({ host: side.host, port: side.port, method, path: side.base + path, agent: side.agent, headers }, resolve);
    req.on('error', reject);
    if (opts.stream) {
      const { size, seed, hash } = opts.stream;
      const next = contentStream(seed);
      void (async () => {
        for (let off = 0; off < size; off += BLOCK) {
          const b = next(Math.min(BLOCK, size - off));
          hash?.update(b);
          if (!req.write(b)) await once(req, 'drain');
        }
        req.end();
      })().catch(reject);
    } else req.end(opts.body);
  });
}

/** Reads a response to its end: the byte count, the SHA-256 if asked for, the body if small. */
async function drain(res: IncomingMessage, opts: { hash?: boolean; keep?: boolean } = {}): Promise<{ bytes: number; sha?: string; body?: Buffer }> {
  const h = opts.hash ? createHash('sha256') : null;
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    bytes += c.length;
    h?.update(c);
    if (opts.keep) parts.push(c);
  }
  return { bytes, sha: h?.digest('hex'), body: opts.keep ? Buffer.concat(parts) : undefined };
}

async function expectStatus(res: IncomingMessage, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.statusCode ?? 0)) return;
  const { body } = await drain(res, { keep: true });
  throw new Error(`${what}: HTTP ${res.statusCode} ${body?.toString('utf8').slice(0, 300)}`);
}

async function put(side: Side, path: string, stream: { size: number; seed: string; hash?: ReturnType<typeof createHash> }): Promise<void> {
  const res = await sendRequest(side, 'PUT', path, { stream, headers: { 'content-type': 'application/octet-stream' } });
  await expectStatus(res, [201, 204], `${side.name} PUT ${path}`);
  await drain(res);
}

async function get(side: Side, path: string, size: number, hash = false): Promise<string | undefined> {
  const res = await sendRequest(side, 'GET', path);
  await expectStatus(res, [200], `${side.name} GET ${path}`);
  const r = await drain(res, { hash });
  if (r.bytes !== size) throw new Error(`${side.name} GET ${path}: ${r.bytes} bytes, expected ${size}`);
  return r.sha;
}

async function mkcol(side: Side, path: string): Promise<void> {
  const res = await sendRequest(side, 'MKCOL', path);
  await expectStatus(res, [201], `${side.name} MKCOL ${path}`);
  await drain(res);
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

// ---- memory -----------------------------------------------------------------------------------------------------

function vmRss(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Samples the resident memory of the storage daemon (and of rclone, for comparison) every 100 ms, per phase. */
class MemorySampler {
  phase = 'start';
  readonly peaks = new Map<string, { dfs: number; rclone: number }>();
  private timer: NodeJS.Timeout;

  constructor(private readonly dfsPid: number, private readonly rclonePid: number) {
    this.timer = setInterval(() => this.sample(), 100);
  }

  sample(): { dfs: number; rclone: number } {
    const now = { dfs: vmRss(this.dfsPid) ?? 0, rclone: vmRss(this.rclonePid) ?? 0 };
    const p = this.peaks.get(this.phase) ?? { dfs: 0, rclone: 0 };
    this.peaks.set(this.phase, { dfs: Math.max(p.dfs, now.dfs), rclone: Math.max(p.rclone, now.rclone) });
    return now;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// ---- disk usage ---------------------------------------------------------------------------------------------------

/** Bytes allocated on the filesystem under `dir` (st_blocks), the way du counts them. */
function allocated(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    try {
      total += lstatSync(join(e.parentPath, e.name)).blocks * 512;
    } catch {
      // Temporary files come and go.
    }
  }
  return total + lstatSync(dir).blocks * 512;
}

// ---- the servers --------------------------------------------------------------------------------------------------

async function startRclone(dir: string): Promise<{ proc: ChildProcess; port: number; log: () => string }> {
  const port = await freePort();
  let log = '';
  const proc = spawn(RCLONE, ['serve', 'webdav', dir, '--addr', `127.0.0.1:${port}`, '--user', OWNER, '--pass', PASSWORD], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RCLONE_CONFIG: join(dir, '..', 'rclone.conf') },
  });
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  const probe: Side = { name: 'rclone', host: '127.0.0.1', port, base: '', agent: new Agent() };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`rclone exited (${proc.exitCode}): ${log}`);
    try {
      const res = await sendRequest(probe, 'PROPFIND', '/', { headers: { depth: '0' } });
      await drain(res);
      if (res.statusCode === 207) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`rclone did not answer within 15 s: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  probe.agent.destroy();
  return { proc, port, log: () => log };
}

async function startDfsZone(diskDir: string): Promise<{ zone: TestZone; dfsPid: number }> {
  // The zone's embedded defaults (info logs), as an installation runs; the tests' debug logs would cost dfs CPU.
  const zone = await startZone({ defaults: true });
  try {
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: ZONE, owner: OWNER, password: PASSWORD, deviceName: 'ood1' });
    await zone.waitFor((s) => s.state === 'running' && s.children.some((c) => c.name === 'gateway' && c.healthy), 120_000, 'zone running');
    await zone.waitRoutable(['system-config', 'verify-hub'], 60_000);
    for (const args of [
      ['fs', 'disk', 'add', diskDir, '--id', 'd1'],
      ['fs', 'volume', 'create', VOLUME, '--copies', '1', '--domain', 'disk'],
    ]) {
      const r = await zone.cli(args);
      if (r.code !== 0) throw new Error(`buckyos ${args.join(' ')}: ${r.stderr}`);
    }
    const s = await zone.waitFor((st) => st.children.some((c) => c.name === 'dfs' && c.healthy && c.pid !== null), 90_000, 'dfs running');
    await zone.waitRoutable(['dfs'], 60_000);
    return { zone, dfsPid: s.children.find((c) => c.name === 'dfs')!.pid! };
  } catch (err) {
    await zone.destroy();
    throw err;
  }
}

/** dfs creates the owner's home folder on its own shortly after it starts; WebDAV sees it once it is there. */
async function waitForHome(side: Side): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await sendRequest(side, 'PROPFIND', '/', { headers: { depth: '0' } });
    const { body } = await drain(res, { keep: true });
    if (res.statusCode === 207) return;
    if (Date.now() > deadline) throw new Error(`dfs home folder not reachable over WebDAV: ${res.statusCode} ${body?.toString('utf8')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---- the measurements ---------------------------------------------------------------------------------------------

type Kind = 'largeUp' | 'largeDown' | 'smallUp' | 'smallDown';
const KINDS: Kind[] = ['largeUp', 'largeDown', 'smallUp', 'smallDown'];

/** One timed operation: its wall time and the CPU the server side (dfs and the gateway, or rclone) and the client used. */
interface Sample {
  seconds: number;
  serverCpu: number;
  gatewayCpu: number;
  clientCpu: number;
}

/** User plus system CPU seconds of a process so far, from /proc/<pid>/stat (in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

class Recorder {
  readonly samples: Record<SideName, Record<Kind, Sample[]>> = {
    dfs: { largeUp: [], largeDown: [], smallUp: [], smallDown: [] },
    rclone: { largeUp: [], largeDown: [], smallUp: [], smallDown: [] },
  };

  constructor(private readonly pids: { dfs: number; gateway: number; rclone: number }) {}

  async time(side: SideName, kind: Kind, fn: () => Promise<void>): Promise<number> {
    const server = side === 'dfs' ? this.pids.dfs : this.pids.rclone;
    const s0 = cpuSeconds(server);
    const g0 = side === 'dfs' ? cpuSeconds(this.pids.gateway) : 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    this.samples[side][kind].push({
      seconds,
      serverCpu: cpuSeconds(server) - s0,
      gatewayCpu: side === 'dfs' ? cpuSeconds(this.pids.gateway) - g0 : 0,
      clientCpu: (c.user + c.system) / 1e6,
    });
    return seconds;
  }

  /** Units (MiB or files) per second over every round: all the units over all the time. */
  rate(side: SideName, kind: Kind, unitsPerOp: number): number {
    const xs = this.samples[side][kind];
    return (unitsPerOp * xs.length) / xs.reduce((a, x) => a + x.seconds, 0);
  }

  /** CPU seconds per operation, averaged over the rounds. */
  cpu(side: SideName, kind: Kind, which: 'serverCpu' | 'gatewayCpu' | 'clientCpu'): number {
    const xs = this.samples[side][kind];
    return xs.reduce((a, x) => a + x[which], 0) / xs.length;
  }
}

export async function main(): Promise<void> {
  console.log('dfs-webdav: dcfs-lite over WebDAV (its LAN listener) vs rclone serve webdav on a plain directory');
  ensureBuilt();
  const rcloneVersion = spawnSync(RCLONE, ['version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? '?';
  console.log(`  ${machineLine()}; ${rcloneVersion}`);
  console.log(
    `  large: ${fmt(LARGE_BYTES / MiB)} MiB x ${LARGE_ROUNDS} rounds; small: ${fmt(SMALL_FILES)} x ${SMALL_BYTES / 1024} KiB x ${SMALL_ROUNDS} rounds, ` +
      `${CONCURRENCY} in flight; both sides alternate which goes first`,
  );

  const base = mkdtempSync(join(tmpdir(), 'dfs-webdav-'));
  const diskDir = join(base, 'disk1');
  const anchorDir = join(base, 'rclone');
  mkdirSync(diskDir);
  mkdirSync(anchorDir);
  let zone: TestZone | null = null;
  let rclone: Awaited<ReturnType<typeof startRclone>> | null = null;
  let sampler: MemorySampler | null = null;
  const sides: Side[] = [];
  // The report is printed once the zone is gone, so nothing it says while stopping lands after the result line.
  const report: string[] = [];
  try {
    const t0 = Date.now();
    const started = await startDfsZone(diskDir);
    zone = started.zone;
    rclone = await startRclone(anchorDir);
    const dfs: Side = { name: 'dfs', host: '127.0.0.1', port: zone.ports.files, base: `/dav/${VOLUME}/home/${OWNER}`, agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }) };
    const anchor: Side = { name: 'rclone', host: '127.0.0.1', port: rclone.port, base: '', agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }) };
    sides.push(dfs, anchor);
    await waitForHome(dfs);
    console.log(`  zone activated, dfs serving volume "${VOLUME}" on disk ${diskDir} after ${fmt((Date.now() - t0) / 1000, 1)} s; rclone on ${anchorDir}`);
    const gatewayPid = zone.status()!.children.find((c) => c.name === 'gateway')!.pid!;
    sampler = new MemorySampler(started.dfsPid, rclone.proc.pid!);
    const rssAtStart = sampler.sample();
    const rec = new Recorder({ dfs: started.dfsPid, gateway: gatewayPid, rclone: rclone.proc.pid! });
    /** rclone's large uploads timed once more with an fdatasync of the file after the answer: what it costs durable. */
    const durableAnchor: number[] = [];
    const order = (round: number) => (round % 2 === 0 ? [dfs, anchor] : [anchor, dfs]);
    const largeMiB = LARGE_BYTES / MiB;

    // Large files: each round has its own content, so no round finds the previous one's chunks already stored.
    sampler.phase = 'large files';
    for (let round = 0; round < LARGE_ROUNDS; round++) {
      const name = `/large-${round}.bin`;
      for (const side of order(round)) {
        const up = await rec.time(side.name, 'largeUp', () => put(side, name, { size: LARGE_BYTES, seed: `large ${round}` }));
        if (side === anchor) {
          const t = process.hrtime.bigint();
          const fh = await open(join(anchorDir, name), 'r');
          await fh.datasync();
          await fh.close();
          durableAnchor.push(up + seconds(t));
        }
      }
      const down: Record<string, number> = {};
      for (const side of order(round)) down[side.name] = await rec.time(side.name, 'largeDown', async () => void (await get(side, name, LARGE_BYTES)));
      const last = (s: SideName) => fmt(largeMiB / rec.samples[s].largeUp[round]!.seconds);
      console.log(
        `  large round ${round + 1}: up dfs ${last('dfs')} / rclone ${last('rclone')} MiB/s, ` +
          `down dfs ${fmt(largeMiB / down.dfs!)} / rclone ${fmt(largeMiB / down.rclone!)} MiB/s`,
      );
    }

    // Dedup: one more content, stored twice under two names; only the disk directory counts (rclone stores it twice
    // by design and is not measured here).
    sampler.phase = 'dedup';
    const before = allocated(diskDir);
    const expected = createHash('sha256');
    let t = process.hrtime.bigint();
    await put(dfs, '/dedup-a.bin', { size: LARGE_BYTES, seed: 'dedup', hash: expected });
    const firstCopySec = seconds(t);
    const afterOne = allocated(diskDir);
    t = process.hrtime.bigint();
    await put(dfs, '/dedup-b.bin', { size: LARGE_BYTES, seed: 'dedup' });
    const secondCopySec = seconds(t);
    const afterTwo = allocated(diskDir);
    const dedupRatio = (afterTwo - before) / LARGE_BYTES;
    // The second copy is read back whole and checked, so the figures above are of a store that keeps the bytes.
    const backSha = await get(dfs, '/dedup-b.bin', LARGE_BYTES, true);
    const wantSha = expected.digest('hex');
    if (backSha !== wantSha) throw new Error(`dfs returned other bytes for the deduplicated copy: ${backSha} != ${wantSha}`);
    const status = await zone.cli(['fs', 'status', '--json']);
    const disk = status.code === 0 ? (JSON.parse(status.stdout) as { disks: { disk_id: string; chunks: number; bytes: number }[] }).disks.find((d) => d.disk_id === 'd1') : undefined;
    console.log(
      `  dedup: first copy ${fmt(largeMiB / firstCopySec)} MiB/s, +${fmt((afterOne - before) / MiB, 1)} MiB on disk; ` +
        `second copy ${fmt(largeMiB / secondCopySec)} MiB/s, +${fmt((afterTwo - afterOne) / MiB, 1)} MiB; read back and verified`,
    );

    // Small files: a fresh directory and fresh content per round.
    sampler.phase = 'small files';
    const smallUp = (side: Side, dir: string, file: (i: number) => Buffer) =>
      forEachConcurrent(SMALL_FILES, CONCURRENCY, async (i) => {
        const res = await sendRequest(side, 'PUT', `${dir}/f${i}`, { body: file(i), headers: { 'content-type': 'application/octet-stream' } });
        await expectStatus(res, [201, 204], `${side.name} PUT ${dir}/f${i}`);
        await drain(res);
      });
    const smallDown = (side: Side, dir: string, file: (i: number) => Buffer) =>
      forEachConcurrent(SMALL_FILES, CONCURRENCY, async (i) => {
        const res = await sendRequest(side, 'GET', `${dir}/f${i}`);
        await expectStatus(res, [200], `${side.name} GET ${dir}/f${i}`);
        const { body } = await drain(res, { keep: true });
        if (!body!.equals(file(i))) throw new Error(`${side.name} GET ${dir}/f${i}: other bytes than were stored`);
      });
    /** rclone's small uploads once more with a syncfs of the filesystem after them: what they cost made durable. */
    const durableAnchorSmall: number[] = [];
    for (let round = 0; round < SMALL_ROUNDS; round++) {
      const pool = randomBytes(SMALL_FILES * SMALL_BYTES);
      const file = (i: number) => pool.subarray(i * SMALL_BYTES, (i + 1) * SMALL_BYTES);
      const dir = `/small-${round}`;
      for (const side of order(round)) {
        await mkcol(side, dir);
        const up = await rec.time(side.name, 'smallUp', () => smallUp(side, dir, file));
        if (side === anchor) {
          const t = process.hrtime.bigint();
          const sync = spawnSync('sync', ['-f', anchorDir]);
          if (sync.status !== 0) throw new Error(`sync -f ${anchorDir}: ${sync.stderr}`);
          durableAnchorSmall.push(up + seconds(t));
        }
      }
      for (const side of order(round)) await rec.time(side.name, 'smallDown', () => smallDown(side, dir, file));
      const fps = (s: SideName, k: Kind) => fmt(SMALL_FILES / rec.samples[s][k][round]!.seconds);
      console.log(
        `  small round ${round + 1}: up dfs ${fps('dfs', 'smallUp')} / rclone ${fps('rclone', 'smallUp')} files/s, ` +
          `down dfs ${fps('dfs', 'smallDown')} / rclone ${fps('rclone', 'smallDown')} files/s`,
      );
    }

    // Once more through the node gateway, as a device without dfs or an app reaches it: what the extra HTTP hop costs.
    sampler.phase = 'through the gateway';
    const viaGateway: Side = { name: 'dfs', host: '127.0.0.1', port: zone.ports.gateway, base: `/dav/${VOLUME}/home/${OWNER}`, agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }) };
    sides.push(viaGateway);
    t = process.hrtime.bigint();
    await get(viaGateway, '/large-0.bin', LARGE_BYTES);
    const gatewayDown = largeMiB / seconds(t);
    const pool = randomBytes(SMALL_FILES * SMALL_BYTES);
    await mkcol(viaGateway, '/small-gateway');
    t = process.hrtime.bigint();
    await smallUp(viaGateway, '/small-gateway', (i) => pool.subarray(i * SMALL_BYTES, (i + 1) * SMALL_BYTES));
    const gatewaySmall = SMALL_FILES / seconds(t);
    console.log(`  through the gateway: large down ${fmt(gatewayDown)} MiB/s, small up ${fmt(gatewaySmall)} files/s`);
    sampler.phase = 'end';
    const rssAtEnd = sampler.sample();
    sampler.stop();

    const now = zone.status()?.children.find((c) => c.name === 'dfs');
    if (now?.pid !== started.dfsPid) throw new Error(`dfs restarted during the run (pid ${started.dfsPid} -> ${now?.pid})`);

    const units = (k: Kind) => (k === 'largeUp' || k === 'largeDown' ? largeMiB : SMALL_FILES);
    const r = (s: SideName, k: Kind) => rec.rate(s, k, units(k));
    const ratio = (k: Kind) => r('dfs', k) / r('rclone', k);
    const durable = (largeMiB * durableAnchor.length) / durableAnchor.reduce((a, b) => a + b, 0);
    const durableSmall = (SMALL_FILES * durableAnchorSmall.length) / durableAnchorSmall.reduce((a, b) => a + b, 0);
    const label: Record<Kind, string> = {
      largeUp: 'large upload MiB/s',
      largeDown: 'large download MiB/s',
      smallUp: 'small upload files/s',
      smallDown: 'small download files/s',
    };
    const target: Record<Kind, string> = {
      largeUp: `>= ${TARGET_LARGE}`,
      largeDown: `>= ${TARGET_LARGE}`,
      smallUp: `>= ${TARGET_SMALL.toFixed(1)}, >= ${fmt(TARGET_SMALL_RATE)}/s`,
      smallDown: '-',
    };
    report.push('');
    report.push(
      table(
        ['measure (all rounds)', 'dfs', 'rclone', 'dfs/rclone', 'target'],
        [
          ...KINDS.map((k) => [label[k], fmt(r('dfs', k)), fmt(r('rclone', k)), fmt(ratio(k), 2), target[k]]),
          ['large upload MiB/s, rclone made durable (+ fdatasync)', fmt(r('dfs', 'largeUp')), fmt(durable), fmt(r('dfs', 'largeUp') / durable, 2), '-'],
          ['small upload files/s, rclone made durable (+ syncfs)', fmt(r('dfs', 'smallUp')), fmt(durableSmall), fmt(r('dfs', 'smallUp') / durableSmall, 2), '-'],
          ['large download MiB/s, dfs through the gateway (1 round)', fmt(gatewayDown), fmt(r('rclone', 'largeDown')), fmt(gatewayDown / r('rclone', 'largeDown'), 2), '-'],
          ['small upload files/s, dfs through the gateway (1 round)', fmt(gatewaySmall), fmt(r('rclone', 'smallUp')), fmt(gatewaySmall / r('rclone', 'smallUp'), 2), '-'],
        ],
      ),
    );
    const rounds = (s: SideName, k: Kind) => rec.samples[s][k].map((x) => fmt(units(k) / x.seconds)).join(', ');
    report.push(`  per round: large up dfs ${rounds('dfs', 'largeUp')}, rclone ${rounds('rclone', 'largeUp')} MiB/s; large down dfs ${rounds('dfs', 'largeDown')}, rclone ${rounds('rclone', 'largeDown')} MiB/s`);
    report.push(`             small up dfs ${rounds('dfs', 'smallUp')}, rclone ${rounds('rclone', 'smallUp')} files/s; small down dfs ${rounds('dfs', 'smallDown')}, rclone ${rounds('rclone', 'smallDown')} files/s`);
    report.push('');
    // CPU per unit of work: per GiB for large files, per 1,000 files for small ones.
    const per = (k: Kind) => (k === 'largeUp' || k === 'largeDown' ? LARGE_BYTES / GiB : SMALL_FILES / 1000);
    const cpu = (s: SideName, k: Kind, w: 'serverCpu' | 'gatewayCpu' | 'clientCpu') => fmt(rec.cpu(s, k, w) / per(k), 2);
    report.push(
      table(
        ['CPU seconds (per GiB; per 1,000 small files)', 'dfs service', 'gateway', 'client', 'rclone', 'client'],
        KINDS.map((k) => [label[k].replace(/ (MiB|files)\/s$/, ''), cpu('dfs', k, 'serverCpu'), cpu('dfs', k, 'gatewayCpu'), cpu('dfs', k, 'clientCpu'), cpu('rclone', k, 'serverCpu'), cpu('rclone', k, 'clientCpu')]),
      ),
    );
    report.push('');
    report.push(
      table(
        ['dedup: one content stored twice', 'MiB', 'x content size'],
        [
          ['disk directory growth, first copy', fmt((afterOne - before) / MiB, 1), fmt((afterOne - before) / LARGE_BYTES, 3)],
          ['disk directory growth, both copies', fmt((afterTwo - before) / MiB, 1), fmt(dedupRatio, 3)],
          ...(disk ? [[`chunk store at the end (${fmt(disk.chunks)} chunks, all content)`, fmt(disk.bytes / MiB, 1), '-']] : []),
        ],
      ),
    );
    report.push(`  upload speed: first copy ${fmt(largeMiB / firstCopySec)} MiB/s, second copy ${fmt(largeMiB / secondCopySec)} MiB/s`);
    report.push('');
    const mem = (n: number) => fmt(n / MiB, 1);
    const peaks = [...sampler.peaks.values()];
    report.push(
      table(
        ['VmRSS MB', 'dfs', 'rclone'],
        [
          ['before the run', mem(rssAtStart.dfs), mem(rssAtStart.rclone)],
          ...[...sampler.peaks].filter(([p]) => p !== 'start' && p !== 'end').map(([p, v]) => [`peak, ${p}`, mem(v.dfs), mem(v.rclone)]),
          ['peak, whole run', mem(Math.max(...peaks.map((v) => v.dfs))), mem(Math.max(...peaks.map((v) => v.rclone)))],
          ['end of the run', mem(rssAtEnd.dfs), mem(rssAtEnd.rclone)],
        ],
      ),
    );

    const smallRate = r('dfs', 'smallUp');
    const met = [ratio('largeUp') >= TARGET_LARGE, ratio('largeDown') >= TARGET_LARGE, ratio('smallUp') >= TARGET_SMALL && smallRate >= TARGET_SMALL_RATE, dedupRatio < TARGET_DEDUP];
    const yes = (b: boolean) => (b ? 'yes' : 'NO');
    report.push('');
    // Other work on the machine moves these figures by about 2x: the load at the end says how quiet the run was.
    report.push(`  at the end: ${machineLine()}`);
    report.push(`  targets met: large up ${yes(met[0]!)}, large down ${yes(met[1]!)}, small files ${yes(met[2]!)}, dedup ${yes(met[3]!)}`);
    report.push(
      `dfs/rclone: large up ${fmt(ratio('largeUp'), 2)}, large down ${fmt(ratio('largeDown'), 2)}, small ${fmt(smallRate)} files/s ratio ${fmt(ratio('smallUp'), 2)}; ` +
        `dedup ${fmt(dedupRatio, 3)} (targets >= ${TARGET_LARGE}, >= ${TARGET_LARGE}, >= ${fmt(TARGET_SMALL_RATE)} files/s and >= ${TARGET_SMALL.toFixed(1)}, < ${TARGET_DEDUP})`,
    );
  } finally {
    sampler?.stop();
    for (const s of sides) s.agent.destroy();
    if (rclone && rclone.proc.exitCode === null) {
      const exited = once(rclone.proc, 'exit');
      rclone.proc.kill('SIGTERM');
      await exited;
    }
    await zone?.destroy();
    rmSync(base, { recursive: true, force: true });
  }
  for (const line of report) console.log(line);
}
