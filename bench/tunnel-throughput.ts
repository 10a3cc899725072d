// Throughput of one device-to-device tunnel stream (src/lib/tunnel) against a plain TCP connection between the same two
// devices (DESIGN §8, §12). Each device is its own network namespace (test/support/netns.ts), joined by veth pairs and
// a bridge as two machines on one LAN would be. Device b runs the receivers (a TCP sink, a TLS sink and a tunnel
// server whose handler is a sink); device a runs one long-lived sender. Every transfer is one stream of bytes from a
// to b, timed at the sender from its first byte until b's answer that it has counted the last one: a TCP or TLS
// transfer on a new connection, a tunnel transfer as a new request on the session opened (and its keys checked)
// before any timing.
// Rounds alternate the order of the paths, so drift in the machine's load does not favour one, and both processes
// report the CPU time each transfer cost them. The kernel's network work is charged to whichever end happens to run it
// (on a veth link, a write can carry a packet through both TCP stacks, and a read's ACK can push the sender's queued
// data), so each end's share moves with which end is the slower; the two ends' sum does not.
//
// A third path, not part of the comparison, shows where the tunnel's cost lies: TLS alone, one TLS 1.3 connection with
// the tunnel's own settings (cipher suites, device certificates both ways) and no HTTP/2 on it, carrying the bytes
// raw. The gap between it and plain TCP is what Node's TLS costs; the gap between it and the tunnel is HTTP/2's share.
//
// The namespaces' link has no speed of its own: it moves data as fast as the CPUs copy it, so the first phase measures
// what each path costs in CPU. A second phase limits a's outgoing link to 2.5 Gbit/s (tc tbf), a fast home LAN, to
// show whether one tunnel stream fills a real link. The headline (last line) is the first phase's ratio.
//
// This file is also the program those processes run: `node --import tsx bench/tunnel-throughput.ts serve|send`, with
// their settings (keys included) as the first JSON line on stdin, never on the command line.
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, privateKeyFromPem, privateKeyToPem } from '../src/lib/identity/keys.ts';
import { selfSignedCert, x509PublicKeyB64 } from '../src/lib/identity/tls-certs.ts';
import { TunnelClient, startTunnelServer } from '../src/lib/tunnel/index.ts';
import { TLS_OPTIONS } from '../src/lib/tunnel/common.ts';
import { netnsUnavailableReason, startNet, type TestNet } from '../test/support/netns.ts';
import { fmt, machineLine, table } from './support/measure.ts';

const MIB = 1024 * 1024;
const CHUNK = MIB;
/** Per phase: bytes per transfer, rounds per side, and the rate a's link is limited to (tc syntax), if any. */
const PHASES = [
  { label: 'unlimited link', bytes: 1024 * MIB, rounds: 6, rate: null },
  { label: '2.5 Gbit/s link', bytes: 256 * MIB, rounds: 2, rate: '2500mbit' },
] as const;
const TCP_PORT = 5001;
const TLS_PORT = 5002;
const TUNNEL_PORT = 2980;
const TARGET = 0.7;
const SELF = fileURLToPath(import.meta.url);

type Mode = 'tcp' | 'tunnel' | 'tls';
const MODES: readonly Mode[] = ['tcp', 'tunnel', 'tls'];
const PATH_NAMES: Record<Mode, string> = { tcp: 'direct TCP', tunnel: 'tunnel', tls: 'TLS alone' };

interface ServeSpec {
  host: string;
  keyPem: string;
  certPem: string;
  /** The sender's device key: the only one the tunnel server admits. */
  clientKey: string;
}

interface SendSpec {
  host: string;
  keyPem: string;
  certPem: string;
  serverKey: string;
}

/** b's answer at the end of a transfer. */
interface Received {
  bytes: number;
  /** CPU seconds (user + system) b spent on the transfer. */
  cpu: number;
}

interface Transfer extends Received {
  seconds: number;
  /** CPU seconds a spent on the transfer. */
  senderCpu: number;
}

/** CPU seconds this process has used since `since`. */
function cpuSince(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

/** `bytes` of one repeated chunk, produced as fast as the consumer takes them. */
function source(bytes: number): Readable {
  const chunk = Buffer.alloc(CHUNK, 0x5a);
  let left = bytes;
  return new Readable({
    highWaterMark: 4 * CHUNK,
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, CHUNK);
      left -= n;
      this.push(n === CHUNK ? chunk : chunk.subarray(0, n));
    },
  });
}

// ---- device b: the receivers -----------------------------------------------------------------------------------

/** Counts a connection's bytes and answers with the count when the sender has finished. */
function sink(sock: Socket): void {
  let n = 0;
  const cpu0 = process.cpuUsage();
  sock.on('data', (d: Buffer) => (n += d.length));
  sock.on('end', () => sock.end(JSON.stringify({ bytes: n, cpu: cpuSince(cpu0) } satisfies Received)));
  sock.on('error', () => {});
}

async function listen(server: Server, port: number, host: string): Promise<void> {
  server.listen(port, host);
  await once(server, 'listening');
}

async function serve(spec: ServeSpec, lines: AsyncIterator<string>): Promise<void> {
  const tcp = createServer(sink);
  await listen(tcp, TCP_PORT, spec.host);
  // allowHalfOpen: the sender ends its side when it has sent everything, and the count goes back on the other side.
  const tls = createTlsServer(
    { ...TLS_OPTIONS, key: spec.keyPem, cert: spec.certPem, requestCert: true, rejectUnauthorized: false, allowHalfOpen: true },
    sink,
  );
  await listen(tls, TLS_PORT, spec.host);
  const tunnel = await startTunnelServer({
    host: spec.host,
    port: TUNNEL_PORT,
    key: privateKeyFromPem(spec.keyPem),
    certPem: spec.certPem,
    authorizePeer: (k) => (k === spec.clientKey ? 'a' : null),
    handler(req, res) {
      let n = 0;
      const cpu0 = process.cpuUsage();
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(JSON.stringify({ bytes: n, cpu: cpuSince(cpu0) } satisfies Received)));
    },
    onError: (e) => console.error(`tunnel server: ${e.message}`),
  });
  console.log('ready');
  // The benchmark stops this process by closing its stdin (or, if the benchmark dies, by destroying the namespace).
  while (!(await lines.next()).done);
  tcp.close();
  tls.close();
  await tunnel.close();
}

// ---- device a: the sender --------------------------------------------------------------------------------------

async function send(spec: SendSpec, lines: AsyncIterator<string>): Promise<void> {
  const client = new TunnelClient({ key: privateKeyFromPem(spec.keyPem), certPem: spec.certPem });
  const peer = { name: 'b', key: spec.serverKey, address: `${spec.host}:${TUNNEL_PORT}` };
  const answer = async (body: AsyncIterable<unknown>): Promise<Received> => {
    let text = '';
    for await (const d of body) text += String(d);
    return JSON.parse(text) as Received;
  };
  const transfers: Record<Mode, (bytes: number) => Promise<Received>> = {
    async tcp(bytes) {
      const sock = tcpConnect(TCP_PORT, spec.host);
      await once(sock, 'connect');
      source(bytes).pipe(sock);
      return answer(sock);
    },
    async tunnel(bytes) {
      const res = await client.request(peer, { method: 'POST', path: '/sink', body: source(bytes) });
      if (res.status !== 200) throw new Error(`the tunnel sink answered HTTP ${res.status}`);
      return answer(res.body);
    },
    async tls(bytes) {
      // A new connection like the TCP path: its handshake (a few ms) is part of the time, as TCP's connect is.
      const sock = tlsConnect({ ...TLS_OPTIONS, key: spec.keyPem, cert: spec.certPem, host: spec.host, port: TLS_PORT, rejectUnauthorized: false });
      await once(sock, 'secureConnect');
      const cert = sock.getPeerX509Certificate();
      if (cert === undefined || x509PublicKeyB64(cert) !== spec.serverKey) throw new Error("the TLS sink did not present device b's key");
      source(bytes).pipe(sock);
      return answer(sock);
    },
  };
  try {
    // The session (TCP, TLS, key checks both ways) is opened before anything is timed.
    await answer((await client.request(peer, { method: 'POST', path: '/sink', body: Buffer.alloc(0) })).body);
    console.log('ready');
    for (let line = await lines.next(); !line.done; line = await lines.next()) {
      const [mode, bytes] = line.value.split(' ') as [Mode, string];
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const received = await transfers[mode](Number(bytes));
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(JSON.stringify({ ...received, seconds, senderCpu: cpuSince(cpu0) } satisfies Transfer));
    }
  } finally {
    await client.close();
  }
}

// ---- the benchmark ---------------------------------------------------------------------------------------------

/** One of the two processes, started in its device's namespace; `ask` sends a line and waits for the next line out. */
async function startRole(net: TestNet, device: string, role: 'serve' | 'send', spec: ServeSpec | SendSpec) {
  const child = net.spawn(device, process.execPath, ['--import', 'tsx', SELF, role], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = once(child, 'exit');
  const next = async (): Promise<string> => {
    const line = await Promise.race([out.next(), exited.then(([code, signal]) => ({ done: true, value: `exit ${code ?? signal}` }))]);
    if (line.done) throw new Error(`${role} on ${device} stopped (${String(line.value)})`);
    return line.value as string;
  };
  child.stdin!.write(`${JSON.stringify(spec)}\n`);
  const ready = await next();
  if (ready !== 'ready') throw new Error(`${role} on ${device} said ${JSON.stringify(ready)} instead of ready`);
  return {
    async ask(line: string): Promise<string> {
      child.stdin!.write(`${line}\n`);
      return next();
    },
    async stop(): Promise<void> {
      child.stdin!.end();
      await exited;
    },
  };
}

export async function main(): Promise<void> {
  const unavailable = netnsUnavailableReason();
  if (unavailable) throw new Error(`tunnel-throughput needs network namespaces: ${unavailable}`);
  console.log('tunnel-throughput: one tunnel stream (TLS 1.3 + HTTP/2) vs one plain TCP connection, device a -> device b');
  console.log(`  ${machineLine()}`);
  console.log(`  each device in its own network namespace; ${CHUNK / MIB} MiB writes; rounds alternate the order of the paths`);

  const [a, b] = [generateKeyPair(), generateKeyPair()];
  const [certA, certB] = await Promise.all([selfSignedCert({ key: a, commonName: 'a' }), selfSignedCert({ key: b, commonName: 'b' })]);
  const net = await startNet({ devices: [{ name: 'a' }, { name: 'b' }] });
  const results: { label: string; bytes: number; runs: Record<Mode, Transfer[]> }[] = [];
  try {
    const host = net.device('b').ip;
    const receiver = await startRole(net, 'b', 'serve', { host, keyPem: privateKeyToPem(b.privateKey), certPem: certB, clientKey: a.publicKeyB64 });
    try {
      const sender = await startRole(net, 'a', 'send', { host, keyPem: privateKeyToPem(a.privateKey), certPem: certA, serverKey: b.publicKeyB64 });
      try {
        for (const phase of PHASES) {
          if (phase.rate !== null) {
            // A token bucket on a's side of the link. Its burst must hold what the rate sends in one kernel tick (1.25 MB at
            // 2.5 Gbit/s and 250 Hz), or the bucket itself would be the limit.
            await net.exec('a', 'tc', ['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', phase.rate, 'burst', '2mb', 'latency', '50ms']);
          }
          console.log(`  ${phase.label}: ${phase.bytes / MIB} MiB per transfer, ${phase.rounds} rounds per path`);
          const runs: Record<Mode, Transfer[]> = { tcp: [], tunnel: [], tls: [] };
          for (let round = 0; round < phase.rounds; round++) {
            for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
              const t = JSON.parse(await sender.ask(`${mode} ${phase.bytes}`)) as Transfer;
              if (t.bytes !== phase.bytes) throw new Error(`${mode}: b counted ${t.bytes} bytes of ${phase.bytes} sent`);
              runs[mode].push(t);
              console.log(`    round ${round + 1} ${PATH_NAMES[mode].padEnd(10)} ${fmt(phase.bytes / MIB / t.seconds).padStart(6)} MiB/s`);
            }
          }
          results.push({ label: phase.label, bytes: phase.bytes, runs });
        }
      } finally {
        await sender.stop();
      }
    } finally {
      await receiver.stop();
    }
  } finally {
    await net.destroy();
  }

  // Pooled over the rounds: total bytes over total time, total CPU over total bytes.
  const total = (runs: Transfer[], f: (t: Transfer) => number) => runs.reduce((sum, t) => sum + f(t), 0);
  const rate = (runs: Transfer[], bytes: number) => (runs.length * bytes) / MIB / total(runs, (t) => t.seconds);
  const ratio = (r: (typeof results)[number], mode: Mode = 'tunnel') => rate(r.runs[mode], r.bytes) / rate(r.runs.tcp, r.bytes);
  const rows = results.flatMap((r) =>
    MODES.map((mode) => {
      const gib = (r.runs[mode].length * r.bytes) / (1024 * MIB);
      return [
        r.label,
        PATH_NAMES[mode],
        fmt(rate(r.runs[mode], r.bytes)),
        fmt(total(r.runs[mode], (t) => t.senderCpu) / gib, 2),
        fmt(total(r.runs[mode], (t) => t.cpu) / gib, 2),
        fmt(total(r.runs[mode], (t) => t.senderCpu + t.cpu) / gib, 2),
      ];
    }),
  );
  console.log(`  after: ${machineLine()}`);
  console.log('');
  console.log(table(['link', 'path', 'MiB/s', 'sender CPU s/GiB', 'receiver CPU s/GiB', 'both CPU s/GiB'], rows));
  console.log('');
  const [unlimited, lan] = results;
  console.log(`TLS alone/direct throughput ratio (not a target; Node's TLS without HTTP/2): ${fmt(ratio(unlimited, 'tls'), 2)}`);
  console.log(`tunnel/direct throughput ratio on a ${lan.label}: ${fmt(ratio(lan), 2)}`);
  console.log(`tunnel/direct throughput ratio: ${fmt(ratio(unlimited), 2)} (target >= ${TARGET.toFixed(2)})`);
}

if (process.argv[1] === SELF) {
  const role = process.argv[2];
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error('tunnel-throughput: no settings line on stdin');
  const spec = JSON.parse(first.value) as unknown;
  if (role === 'serve') await serve(spec as ServeSpec, lines);
  else if (role === 'send') await send(spec as SendSpec, lines);
  else throw new Error(`tunnel-throughput: unknown role ${JSON.stringify(role)} (serve or send)`);
}
