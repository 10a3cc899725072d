// cyfs-ns against dnsmasq (DESIGN §12), both measured by dnsperf in one run on the same machine:
// (a) local names: both serve the same 100,000-name hosts file, queried over a 10,000-name set they have answered
//     before (cyfs-ns from its memo of encoded answers, dnsmasq from its hosts cache);
// (b) cached names: both forward to a third process (another dnsmasq) and answer 10,000 names from their caches;
// then latency at a fixed offered rate, where neither is saturated, and the resident memory of a cyfs-ns that holds
// 100,000 cached names. cyfs-ns runs compiled (dist/), as `buckyos ns` does, once in one process and once with a
// worker process sharing its UDP socket (both cores), both through the batched-UDP addon (native/udp-batch), and once
// more in one process through node:dgram, as it runs where the addon is not built. Rounds alternate the order of the
// servers so drift (the machine's other load, page cache) does not favour one; the load average printed before and
// after shows whether anything else competed for the two cores.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadUdpBatch } from '../src/net/ns/udp-batch.ts';
import { freePort } from '../test/support/ports.ts';
import { fmt, machineLine, percentile, table } from './support/measure.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const LOCAL_NAMES = 100_000;
const QUERY_NAMES = 10_000;
const CACHED_NAMES = 100_000;
const ROUNDS = 3;
const PHASE_S = 5;
/** dnsperf's load: 4 sockets, 200 queries in flight (more only adds queueing delay on two cores). */
const LOAD = ['-c', '4', '-q', '200'];
/** The fixed rate the latency percentiles are taken at: every server here keeps up with it. */
const P99_RATE = 20_000;
/** The flags node-daemon runs the ns service with (KERNEL_NODE_FLAGS and NS_SERVICE_FLAGS) and docs/ns.md gives the
 * standalone server: a 1 MB young generation (under load the default 16 MB semi-spaces alone would put about 30 MB
 * on the resident size, for no measurable gain in rate), no V8 background threads (about 3 MB less) and no baseline
 * compiler (about 1 MB less). */
const NS_NODE_FLAGS = ['--max-semi-space-size=1', '--single-threaded', '--no-sparkplug'];
const SETTLE_S = 30;
const TARGET_RATIO = 1.0;
const TARGET_RSS_MB = 64;
const MB = 1024 * 1024;

interface Server {
  label: string;
  port: number;
  child: ChildProcess;
  stats?: () => Promise<{ cache: { entries: number }; processes: number }>;
}

function newestMtime(dir: string, include: (file: string) => boolean): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && include(entry.name)) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** cyfs-ns runs compiled, as the CLI runs it; build dist/ when it is missing or older than src/. */
function ensureBuilt(): void {
  const marker = join(REPO, 'dist', 'net', 'ns', 'main.js');
  const compiled = (f: string) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.suite.ts');
  if (existsSync(marker) && statSync(marker).mtimeMs >= newestMtime(join(REPO, 'src'), compiled)) return;
  console.log('  dist/ is missing or older than src/: running npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run build failed (${r.status ?? r.signal})`);
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => out.push(c));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${Buffer.concat(out).toString().slice(-500)}`))));
  });
}

async function dig(port: number, name: string): Promise<string> {
  return (await run('dig', ['@127.0.0.1', '-p', String(port), '+short', '+tries=1', '+time=2', name, 'A'])).trim();
}

async function waitForDns(port: number, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await run('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=1', 'ready.check', 'A'])).includes('status:')) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start answering on port ${port}`);
}

function startDnsmasq(label: string, port: number, conf: string[], dir: string): Server {
  const file = join(dir, `${label}.conf`);
  writeFileSync(file, ['no-resolv', 'no-hosts', `port=${port}`, 'listen-address=127.0.0.1', 'bind-interfaces', 'pid-file=', ...conf].join('\n'));
  const child = spawn('dnsmasq', ['-k', '-C', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  return { label, port, child };
}

/** cyfs-ns from dist/, reading its YAML file, in a child that answers "stats" and "stop" over IPC. */
async function startCyfsNs(label: string, yaml: string, dir: string, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const file = join(dir, `${label}.yaml`);
  writeFileSync(file, yaml);
  const main = join(REPO, 'dist', 'net', 'ns', 'main.js');
  const script = `
    import { loadNsConfig, startNs } from ${JSON.stringify(main)};
    const { server } = await startNs(loadNsConfig(process.argv[1]));
    process.on('message', async (m) => {
      if (m === 'stats') process.send({ stats: await server.stats() });
      if (m === 'stop') { await server.close(); process.exit(0); }
    });
    process.send({ port: server.port });`;
  const child = spawn(process.execPath, [...NS_NODE_FLAGS, '--input-type=module', '-e', script, file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`cyfs-ns (${label}) exited ${code} before it was ready`)));
  });
  const stats = () =>
    new Promise<{ cache: { entries: number }; processes: number }>((resolve) => {
      child.once('message', (m) => resolve((m as { stats: { cache: { entries: number }; processes: number } }).stats));
      child.send('stats');
    });
  return { label, port, child, stats };
}

async function stop(s: Server): Promise<void> {
  const c = s.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  if (c.connected) c.send('stop');
  else c.kill('SIGTERM');
  const killer = setTimeout(() => c.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

interface Perf {
  qps: number;
  completed: number;
  lost: number;
}

async function dnsperf(port: number, file: string, extra: string[]): Promise<{ perf: Perf; out: string }> {
  const out = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, ...extra]);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  return { perf: { qps: num(/Queries per second:\s+([\d.]+)/), completed: num(/Queries completed:\s+(\d+)/), lost: num(/Queries lost:\s+(\d+)/) }, out };
}

/** Latency percentiles at a fixed rate, from dnsperf's per-query report. */
async function latency(port: number, file: string): Promise<{ p50: number; p99: number; answered: number }> {
  const { out } = await dnsperf(port, file, ['-l', '4', '-Q', String(P99_RATE), '-c', '4', '-v']);
  const ms = out.split('\n').filter((l) => l.startsWith('> ')).map((l) => Number(l.split(' ').at(-1)) * 1000).sort((a, b) => a - b);
  return { p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), answered: ms.length };
}

/** The process and every descendant (the worker processes). */
function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function nsYaml(port: number, upstreamPort: number, opts: { workers: number; hosts?: string; maxEntries: number }): string {
  return [
    'listen: { addresses: [127.0.0.1], port: ' + port + ' }',
    `workers: ${opts.workers}`,
    `cache: { max_entries: ${opts.maxEntries} }`,
    `upstreams: { groups: { default: { servers: ["127.0.0.1:${upstreamPort}"] } } }`,
    opts.hosts ? `local: { domains: [bench.lan], ttl: 300, hosts_files: [${opts.hosts}] }` : '',
    'log: { level: warn }',
  ].join('\n');
}

export async function main(): Promise<void> {
  console.log('dns-qps: cyfs-ns vs dnsmasq, dnsperf on the same machine');
  console.log(`  ${machineLine()}`);
  console.log(`  ${(await run('dnsmasq', ['--version'])).split('\n')[0]}; ${(await run('dnsperf', ['-h']).catch((e: Error) => e.message)).match(/Version [\d.]+/)?.[0] ?? ''}`);
  console.log(`  dnsperf ${LOAD.join(' ')}, ${ROUNDS} rounds x ${PHASE_S} s per server and scenario; latency at ${fmt(P99_RATE)} queries/s`);
  const addon = loadUdpBatch();
  console.log(`  cyfs-ns: ${NS_NODE_FLAGS.join(' ')}; batched UDP: ${'addon' in addon ? 'built' : `NOT AVAILABLE (${addon.reason}): "cyfs-ns" below is node:dgram too`}`);
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'bench-dns-'));
  // dnsmasq drops root for "nobody", which must still read the hosts files in here.
  chmodSync(dir, 0o755);
  const servers: Server[] = [];
  try {
    const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const localHosts = join(dir, 'local.hosts');
    writeFileSync(localHosts, Array.from({ length: LOCAL_NAMES }, (_, i) => `${ip(i)} l${i}.bench.lan\n`).join(''));
    writeFileSync(join(dir, 'up.hosts'), Array.from({ length: CACHED_NAMES }, (_, i) => `${ip(i)} c${i}.up.bench\n`).join(''));
    // Spread over the whole set so neither server benefits from a tiny working set.
    const step = LOCAL_NAMES / QUERY_NAMES;
    writeFileSync(join(dir, 'local.txt'), Array.from({ length: QUERY_NAMES }, (_, i) => `l${i * step}.bench.lan A\n`).join(''));
    writeFileSync(join(dir, 'cached.txt'), Array.from({ length: QUERY_NAMES }, (_, i) => `c${i * step}.up.bench A\n`).join(''));
    writeFileSync(join(dir, 'all-cached.txt'), Array.from({ length: CACHED_NAMES }, (_, i) => `c${i}.up.bench A\n`).join(''));

    const port = { upstream: await freePort(), dnsmasq: await freePort(), ns1: await freePort(), ns2: await freePort(), nsDgram: await freePort(), mem: await freePort() };
    const upstream = startDnsmasq('upstream', port.upstream, [`addn-hosts=${join(dir, 'up.hosts')}`, 'local=/up.bench/', 'local-ttl=3600'], dir);
    servers.push(upstream);
    const dnsmasq = startDnsmasq('dnsmasq', port.dnsmasq, [`addn-hosts=${localHosts}`, 'local=/bench.lan/', 'local-ttl=300', `server=127.0.0.1#${port.upstream}`, 'cache-size=20000'], dir);
    servers.push(dnsmasq);
    await Promise.all([waitForDns(port.upstream, 'upstream dnsmasq'), waitForDns(port.dnsmasq, 'dnsmasq')]);
    const ns1 = await startCyfsNs('cyfs-ns', nsYaml(port.ns1, port.upstream, { workers: 1, hosts: localHosts, maxEntries: 150_000 }), dir);
    servers.push(ns1);
    const ns2 = await startCyfsNs('cyfs-ns x2', nsYaml(port.ns2, port.upstream, { workers: 2, hosts: localHosts, maxEntries: 150_000 }), dir);
    servers.push(ns2);
    const nsDgram = await startCyfsNs('cyfs-ns dgram', nsYaml(port.nsDgram, port.upstream, { workers: 1, hosts: localHosts, maxEntries: 150_000 }), dir, { CYFS_NS_UDP: 'dgram' });
    servers.push(nsDgram);
    const contenders = [dnsmasq, ns1, ns2, nsDgram];

    // The same answers from each, before any timing (asked again when none came: dig gives up after 2 s, which a
    // first forwarded query can take on a machine busy with other work).
    for (const name of ['l4242.bench.lan', 'c4242.up.bench']) {
      const answers = await Promise.all(
        contenders.map(async (s) => {
          for (let attempt = 1; ; attempt++) {
            const a = await dig(s.port, name);
            if (a !== '' || attempt === 3) return a;
          }
        }),
      );
      if (new Set(answers).size !== 1 || answers[0] === '') throw new Error(`servers disagree on ${name}: ${answers.join(' / ')}`);
    }
    // Warm-up: every query name answered once by each (filling caches and memos), unsaturated so none is lost.
    for (const s of contenders) {
      for (const f of ['local.txt', 'cached.txt']) await dnsperf(s.port, join(dir, f), ['-n', '2', '-Q', '20000']);
    }

    const scenarios = ['local', 'cached'] as const;
    const qps = new Map<string, number[]>();
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const scenario of scenarios) {
        for (const s of order) {
          const { perf } = await dnsperf(s.port, join(dir, `${scenario}.txt`), ['-l', String(PHASE_S), ...LOAD]);
          if (!(perf.completed > 0) || perf.lost > perf.completed * 0.01) throw new Error(`${s.label} ${scenario}: ${perf.lost} of ${perf.completed + perf.lost} queries lost`);
          const key = `${s.label} ${scenario}`;
          qps.set(key, [...(qps.get(key) ?? []), perf.qps]);
          console.log(`  ${scenario.padEnd(6)} ${s.label.padEnd(13)} round ${round + 1}: ${fmt(perf.qps)} queries/s`);
        }
      }
    }
    const lat = new Map<string, { p50: number; p99: number }>();
    for (const scenario of scenarios) for (const s of contenders) lat.set(`${s.label} ${scenario}`, await latency(s.port, join(dir, `${scenario}.txt`)));
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const rss = (s: Server) => tree(s.child.pid!).reduce((sum, pid) => sum + rssBytes(pid), 0);
    const rssOf = new Map(contenders.map((s) => [s.label, rss(s)]));

    // Memory with 100,000 cached names: a fresh single-process cyfs-ns that only forwards, every name asked once.
    const mem = await startCyfsNs('cyfs-ns mem', nsYaml(port.mem, port.upstream, { workers: 1, maxEntries: 150_000 }), dir);
    servers.push(mem);
    const idleRss = rss(mem);
    for (let pass = 0; pass < 3 && (await mem.stats!()).cache.entries < CACHED_NAMES; pass++) {
      await dnsperf(mem.port, join(dir, 'all-cached.txt'), ['-n', '1', '-Q', '25000']);
    }
    const cachedEntries = (await mem.stats!()).cache.entries;
    const filledRss = rss(mem);
    // V8 gives the garbage of the filling back to the system when its memory reducer runs, some seconds into
    // idleness (8 s after a full collection, if one comes): the lowest reading over a quiet half minute is what
    // the process keeps.
    let memRss = filledRss;
    for (let s = 0; s < SETTLE_S; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      memRss = Math.min(memRss, rss(mem));
    }

    console.log(`  after: ${machineLine()}`);
    console.log('');
    const rows: string[][] = [];
    for (const scenario of scenarios) {
      for (const s of contenders) {
        const k = `${s.label} ${scenario}`;
        const l = lat.get(k)!;
        rows.push([scenario, s.label, fmt(mean(qps.get(k)!)), fmt(l.p50, 3), fmt(l.p99, 3), fmt(rssOf.get(s.label)! / MB, 1)]);
      }
    }
    console.log(table(['names', 'server', 'queries/s', `p50 ms @${P99_RATE / 1000}k/s`, `p99 ms @${P99_RATE / 1000}k/s`, 'RSS MB'], rows));
    console.log('');
    console.log(
      `cyfs-ns RSS with ${fmt(cachedEntries)} cached names (one process, ${NS_NODE_FLAGS.join(' ')}): ${fmt(memRss / MB, 1)} MB ` +
        `settled (lowest over ${SETTLE_S} s idle), ${fmt(filledRss / MB, 1)} MB right after filling, ${fmt(idleRss / MB, 1)} MB empty (target <= ${TARGET_RSS_MB} MB)`,
    );
    const best = (scenario: string) => Math.max(mean(qps.get(`${ns1.label} ${scenario}`)!), mean(qps.get(`${ns2.label} ${scenario}`)!));
    const ratio = (scenario: string) => best(scenario) / mean(qps.get(`${dnsmasq.label} ${scenario}`)!);
    console.log(`cached names: cyfs-ns/dnsmasq qps ratio: ${ratio('cached').toFixed(2)} (target >= ${TARGET_RATIO.toFixed(2)})`);
    console.log(`cyfs-ns/dnsmasq qps ratio: ${ratio('local').toFixed(2)}`);
  } finally {
    await Promise.all(servers.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }
}
