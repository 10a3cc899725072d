// The listeners: DNS over UDP and TCP on every configured address, DNS over HTTPS (RFC 8484, GET and POST; HTTP/2
// and HTTP/1.1 with TLS, HTTP/1.1 without), and worker processes that share the UDP sockets. UDP goes through the
// batched-UDP addon (udp-batch.ts) when it is built, else through node:dgram. Workers read the primary's own bound
// sockets (inherited descriptors, or dgram handles passed over IPC: Node has no SO_REUSEPORT for UDP before v22);
// each process keeps its own cache.
import { type ChildProcess, fork } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import type http2 from 'node:http2';
import { createRequire } from 'node:module';
import net from 'node:net';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../lib/log/logger.ts';
import type { NsConfig } from './config.ts';
import type { LocalRecordSource } from './local.ts';
import { Resolver, type ResolverPart, fitUdp } from './resolver.ts';
import type { TrustedStats } from './trusted.ts';
import { type FakeIpConfig, openFakeIpPool } from './fakeip-config.ts';
import type { FakeIpPool } from './fakeip.ts';
import { type AnswerSource, type LatencySummary, type Transport, mergeParts, percentiles } from './stats.ts';
import { formatIPv4, formatIPv6 } from './ip.ts';
import { type UdpBatchAddon, type UdpBatchListener, loadUdpBatch } from './udp-batch.ts';
import { FLAG, type Query, type QueryProblem, RCODE, emptyAnswer, inspectAnswer, isProblem, optRecord, parseQuery } from './wire.ts';

export interface NsServerOptions {
  config: NsConfig;
  log: Logger;
  /** Local record sources besides configuration and hosts files (the zone's names); only with `workers: 1`. */
  sources?: readonly LocalRecordSource[];
  queryLog?: Logger | null;
  /** Receive and answer UDP in batches through native/udp-batch when it is built (default: yes, unless the
   * environment has CYFS_NS_UDP=dgram); false answers through node:dgram. */
  udpBatch?: boolean;
}

export interface NsStats {
  uptime_s: number;
  processes: number;
  queries: number;
  by_transport: Record<Transport, number>;
  by_source: Record<AnswerSource, number>;
  rcodes: Record<string, number>;
  /** Packets with no answer at all: too short for a header, or responses. */
  dropped: number;
  /** UDP answers sent empty with TC because they were larger than the client could take. */
  truncated: number;
  cache: { entries: number; local_entries: number; hits: number; misses: number; hit_ratio: number; evictions: number; prefetches: number; stale_served: number };
  latency: LatencySummary;
  /** "name TYPE" and how often it was asked (estimates: counted in fixed memory). */
  top_names: { name: string; count: number }[];
  top_blocked: { name: string; count: number }[];
  upstreams: { label: string; group: string; queries: number; failures: number; down: boolean; rtt_ms: number }[];
  block_lists: { name: string; rules: number; unusable_lines: number }[];
  /** Trusted name spaces: queries, cache hits, answers that could not be verified, and the last reason. */
  trusted: TrustedStats[];
  /** Hosts-file and block-list lines that could not be used (the first 100). */
  problems: string[];
  pending: number;
}

/** The fake-ip pool, in the primary only (the configuration refuses fake-ip with workers). */
function openPool(c: FakeIpConfig, log: Logger): FakeIpPool {
  const { pool, problems } = openFakeIpPool(c, { onError: (err) => log.error({ err: err.message }, 'fake-ip: writing recency failed') });
  for (const p of problems.slice(0, 20)) log.warn({ problem: p }, 'fake-ip filter line not used');
  return pool;
}

function mergeTrusted(parts: readonly ResolverPart[]): TrustedStats[] {
  const out = new Map<string, TrustedStats>();
  for (const p of parts) {
    for (const t of p.trusted) {
      const prev = out.get(t.label);
      if (!prev) out.set(t.label, { ...t });
      else {
        prev.queries += t.queries;
        prev.cache_hits += t.cache_hits;
        prev.failures += t.failures;
        prev.last_error = t.last_error ?? prev.last_error;
      }
    }
  }
  return [...out.values()];
}

function problemAnswer(p: QueryProblem, msg: Buffer, ednsSize: number): Buffer {
  return emptyAnswer(msg, p.question?.end, p.rcode & 0xf, 0, p.edns ? optRecord(ednsSize, p.rcode, false) : null);
}

/** A failure inside cyfs-ns while answering: logged, and answered SERVFAIL. One bad query must not take down the
 * server a whole network resolves through. */
function internalFailure(err: unknown, q: Query, ednsSize: number, log: Logger): Buffer {
  log.error({ err: err instanceof Error ? err.stack : String(err) }, 'query failed inside cyfs-ns');
  return emptyAnswer(q.msg, q.qEnd, RCODE.SERVFAIL, 0, q.edns ? optRecord(ednsSize, 0, false) : null);
}

/** The resolver's answer, with internal failures turned into SERVFAIL. */
function resolve(resolver: Resolver, q: Query, client: string, transport: Transport, t0: number, ednsSize: number, log: Logger): Buffer | Promise<Buffer> {
  try {
    const r = resolver.handle(q, client, transport, t0);
    return r instanceof Promise ? r.catch((err: unknown) => internalFailure(err, q, ednsSize, log)) : r;
  } catch (err) {
    return internalFailure(err, q, ednsSize, log);
  }
}

/** The answer to one datagram, fitted to what the client can take over UDP; null for packets that get none. */
function answerDatagram(msg: Buffer, client: string, resolver: Resolver, ednsSize: number, log: Logger): Buffer | Promise<Buffer> | null {
  const t0 = performance.now();
  const q = parseQuery(msg);
  if (q === null) {
    resolver.stats.dropped++;
    return null;
  }
  if (isProblem(q)) {
    resolver.stats.answered('udp', 'error', q.rcode & 0xf, performance.now() - t0);
    return problemAnswer(q, msg, ednsSize);
  }
  const r = resolve(resolver, q, client, 'udp', t0, ednsSize, log);
  return r instanceof Promise ? r.then((out) => fitUdp(out, q, ednsSize)) : fitUdp(r, q, ednsSize);
}

function countTruncated(out: Buffer, resolver: Resolver): void {
  if (out.length > 12 && out[2] & 0x02) resolver.stats.truncated++;
}

/** Answers queries arriving on a bound node:dgram socket (in the primary or in a worker). */
export function serveUdp(socket: dgram.Socket, resolver: Resolver, ednsSize: number, log: Logger): void {
  const send = (out: Buffer, rinfo: dgram.RemoteInfo) => {
    countTruncated(out, resolver);
    socket.send(out, rinfo.port, rinfo.address);
  };
  socket.on('message', (msg, rinfo) => {
    const r = answerDatagram(msg, rinfo.address, resolver, ednsSize, log);
    if (r instanceof Promise) void r.then((out) => send(out, rinfo));
    else if (r !== null) send(r, rinfo);
  });
  socket.on('error', (err) => log.warn({ err: err.message }, 'UDP socket error'));
}

/**
 * Answers queries on a bound socket through the batched-UDP addon, which owns `fd` from here on. Answers known at
 * once go into the shared arena and out with the batch; the others (upstream misses) go out on their own later, to
 * the peer's address copied from the table.
 */
export function serveUdpBatch(addon: UdpBatchAddon, fd: number, resolver: Resolver, ednsSize: number, log: Logger): UdpBatchListener {
  const { META_WORDS, ANSWER_WORDS, ARENA_BYTES, AF_INET } = addon;
  const answersAt = addon.BATCH * META_WORDS;
  let words = new Int32Array(0);
  let bytes = new Uint8Array(0);
  let families = new Uint16Array(0);
  let arena = Buffer.alloc(0);
  // Most batches come from a few clients: the address string is made once per change, not per packet.
  let lastV4 = 0;
  let lastV4Text = '';
  const client = (m: number): string => {
    const at = m * 4 + 8;
    if (families[at >> 1] !== AF_INET) return formatIPv6(bytes, at + 8);
    const v4 = words[m + 3];
    if (v4 !== lastV4 || lastV4Text === '') {
      lastV4 = v4;
      lastV4Text = formatIPv4(bytes, at + 4);
    }
    return lastV4Text;
  };
  const peer = (m: number) => Buffer.from(bytes.subarray(m * 4 + 8, (m + META_WORDS) * 4));
  const sendNow = (out: Buffer, to: Buffer) => {
    countTruncated(out, resolver);
    const err = addon.sendTo(listener, out, to);
    if (err !== 0) log.debug({ errno: err }, 'UDP answer not sent');
  };
  const onBatch = (packets: Buffer, n: number): number => {
    let count = 0;
    let used = 0;
    for (let i = 0; i < n; i++) {
      const m = i * META_WORDS;
      const len = words[m + 1];
      if (len < 0) {
        resolver.stats.dropped++;
        continue;
      }
      const out = answerDatagram(packets.subarray(words[m], words[m] + len), client(m), resolver, ednsSize, log);
      if (out === null) continue;
      if (out instanceof Promise) {
        const to = peer(m);
        void out.then((a) => sendNow(a, to));
      } else if (used + out.length > ARENA_BYTES) {
        sendNow(out, peer(m));
      } else {
        countTruncated(out, resolver);
        arena.set(out, used);
        const a = answersAt + count * ANSWER_WORDS;
        words[a] = i;
        words[a + 1] = used;
        words[a + 2] = out.length;
        used += out.length;
        count++;
      }
    }
    return count;
  };
  const listener = addon.open(fd, onBatch);
  const shared = addon.shared(listener);
  words = new Int32Array(shared);
  bytes = new Uint8Array(shared);
  families = new Uint16Array(shared);
  arena = Buffer.from(shared, (answersAt + addon.BATCH * ANSWER_WORDS) * 4, ARENA_BYTES);
  return listener;
}

const TRIM_EVERY_MS = 10_000;

/**
 * Hands the malloc heap's free pages back to the system every 10 s while queries come in, and after they stop until
 * nothing more is freed. Node's receive buffers (upstream answers still come through node:dgram) and the batches'
 * Buffers are malloc memory, freed when V8 collects them; glibc keeps most of it, in the middle of its heap where it
 * trims nothing by itself: 10-15 MB after a burst of 100,000 cache misses.
 */
export function trimAfterTraffic(addon: UdpBatchAddon, stats: { queries: number }): NodeJS.Timeout {
  let seen = stats.queries;
  let released = false;
  const timer = setInterval(() => {
    if (stats.queries === seen && !released) return;
    seen = stats.queries;
    released = addon.trim();
  }, TRIM_EVERY_MS);
  timer.unref();
  return timer;
}

/** Queries a TCP connection may have waiting on upstreams before it is read no further. */
const TCP_MAX_IN_FLIGHT = 64;

function serveTcp(server: net.Server, resolver: Resolver, cfg: NsConfig, log: Logger, conns: Set<net.Socket>): void {
  server.on('connection', (sock) => {
    if (conns.size >= cfg.limits.tcp_max_connections) {
      sock.destroy();
      return;
    }
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', (err) => log.debug({ err: err.message }, 'TCP client error'));
    sock.setNoDelay(true);
    sock.setTimeout(cfg.limits.tcp_idle_ms, () => sock.destroy());
    const client = sock.remoteAddress ?? '';
    let pending: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    const write = (out: Buffer) => {
      if (sock.destroyed) return;
      const frame = Buffer.allocUnsafe(out.length + 2);
      frame.writeUInt16BE(out.length, 0);
      out.copy(frame, 2);
      sock.write(frame);
    };
    const one = (msg: Buffer) => {
      const t0 = performance.now();
      const q = parseQuery(msg);
      if (q === null) {
        resolver.stats.dropped++;
        sock.destroy();
        return;
      }
      if (isProblem(q)) {
        resolver.stats.answered('tcp', 'error', q.rcode & 0xf, performance.now() - t0);
        return write(problemAnswer(q, msg, cfg.edns_udp_size));
      }
      // The OPT we add can push a 65,535-byte upstream answer over what TCP's length prefix can say.
      const fit = (out: Buffer) => (out.length <= 0xffff ? out : emptyAnswer(q.msg, q.qEnd, out[3] & 0xf, FLAG.TC, null));
      const r = resolve(resolver, q, client, 'tcp', t0, cfg.edns_udp_size, log);
      if (!(r instanceof Promise)) return write(fit(r));
      if (++inFlight >= TCP_MAX_IN_FLIGHT) sock.pause();
      void r.then((out) => {
        write(fit(out));
        if (--inFlight < TCP_MAX_IN_FLIGHT && sock.isPaused()) sock.resume();
      });
    };
    sock.on('data', (chunk: Buffer) => {
      let buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        one(Buffer.from(buf.subarray(2, 2 + len)));
        buf = buf.subarray(2 + len);
      }
      pending = Buffer.from(buf);
    });
  });
}

type DohRequest = http.IncomingMessage | http2.Http2ServerRequest;
type DohResponse = http.ServerResponse | http2.Http2ServerResponse;

/** RFC 8484 §5.1: an HTTP cache may keep the answer no longer than its smallest TTL (the SOA's for a negative one). */
function maxAge(out: Buffer, qEnd: number, qtype: number): number {
  const info = inspectAnswer(out, out, qEnd, qtype);
  if (typeof info === 'string') return 0;
  if (info.ancount > 0) return info.minAnswerTtl === Infinity ? 0 : info.minAnswerTtl;
  return Math.max(0, info.negativeTtl);
}

function dohHandler(resolver: Resolver, cfg: NsConfig, log: Logger) {
  const path = cfg.doh!.path;
  const reply = (res: DohResponse, status: number, text: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
    res.end(`${text}\n`);
  };
  const answer = (req: DohRequest, res: DohResponse, msg: Buffer) => {
    const t0 = performance.now();
    const q = parseQuery(msg);
    if (q === null) return reply(res, 400, 'the body is not a DNS query');
    const send = (out: Buffer, age: number) => {
      // The client may have gone while an upstream was asked.
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(200, { 'content-type': 'application/dns-message', 'content-length': String(out.length), 'cache-control': `max-age=${age}` });
      res.end(out);
    };
    if (isProblem(q)) {
      resolver.stats.answered('doh', 'error', q.rcode & 0xf, performance.now() - t0);
      return send(problemAnswer(q, msg, cfg.edns_udp_size), 0);
    }
    const r = resolve(resolver, q, req.socket.remoteAddress ?? '', 'doh', t0, cfg.edns_udp_size, log);
    if (r instanceof Promise) void r.then((out) => send(out, maxAge(out, q.qEnd, q.qtype)));
    else send(r, maxAge(r, q.qEnd, q.qtype));
  };
  return (req: DohRequest, res: DohResponse) => {
    const url = req.url ?? '/';
    const qmark = url.indexOf('?');
    if ((qmark < 0 ? url : url.slice(0, qmark)) !== path) return reply(res, 404, `DNS over HTTPS is at ${path}`);
    if (req.method === 'GET') {
      const dns = new URLSearchParams(qmark < 0 ? '' : url.slice(qmark + 1)).get('dns');
      if (!dns) return reply(res, 400, 'a GET needs the query in the "dns" parameter (base64url)');
      if (!/^[A-Za-z0-9_-]+=*$/.test(dns)) return reply(res, 400, 'the "dns" parameter is not base64url');
      return answer(req, res, Buffer.from(dns, 'base64url'));
    }
    if (req.method === 'POST') {
      const type = String(req.headers['content-type'] ?? '');
      if (type.split(';')[0].trim() !== 'application/dns-message') return reply(res, 415, 'POST bodies must be application/dns-message');
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 65535) tooBig = true;
        else chunks.push(c);
      });
      req.on('end', () => (tooBig ? reply(res, 413, 'a DNS message is at most 65535 bytes') : answer(req, res, Buffer.concat(chunks))));
      return;
    }
    reply(res, 405, 'DNS over HTTPS takes GET and POST', { allow: 'GET, POST' });
  };
}

/** A bound UDP socket: node:dgram's, or a descriptor the batched-UDP addon answers on. */
type UdpSocket = { kind: 'dgram'; socket: dgram.Socket } | { kind: 'batch'; fd: number; listener: UdpBatchListener };

/** Descriptors a worker inherits start after stdin, stdout, stderr and the IPC channel. */
const FIRST_INHERITED_FD = 4;

interface WorkerHandle {
  index: number;
  child: ChildProcess | null;
  ready: Promise<void>;
  restarts: number;
}

/** Messages between the primary and its workers. */
export type WorkerMessage =
  | { type: 'init'; config: NsConfig; index: number; batchFds: number[] }
  | { type: 'udp' }
  | { type: 'ready' }
  | { type: 'stats'; id: number }
  | { type: 'stats-reply'; id: number; part: ResolverPart }
  | { type: 'reload' }
  | { type: 'reload-failed'; error: string }
  | { type: 'stop' };

/**
 * The primary's flags a worker needs: module loaders (tsx, in development) and V8 heap and compiler settings. Nothing
 * else: `-e` would run the primary's script again, and a test runner's flags would make the worker a test run.
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (['--import', '--require', '-r', '--loader', '--experimental-loader'].includes(a) && i + 1 < argv.length) out.push(a, argv[++i]);
    else if (/^--(import|require|loader|experimental-loader)=/.test(a) || /^--(max-semi-space-size|max-old-space-size|lite-mode|jitless|single-threaded|no-sparkplug)/.test(a)) out.push(a);
  }
  return out;
}

function listenUdp(address: string, port: number): Promise<dgram.Socket> {
  const v6 = net.isIPv6(address);
  const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, lookup: (a, _o, cb) => cb(null, a, v6 ? 6 : 4) });
  return new Promise((resolve, reject) => {
    socket.once('error', (err) => {
      socket.close();
      reject(new Error(`cannot listen on UDP ${address}:${port}: ${err.message}`));
    });
    socket.bind(port, address, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

function bindBatch(addon: UdpBatchAddon, address: string, port: number): { fd: number; port: number } {
  let fd = -1;
  try {
    fd = addon.bind(address, port);
    return { fd, port: addon.port(fd) };
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    throw new Error(`cannot listen on UDP ${address}:${port}: ${(err as Error).message}`);
  }
}

function listenTcp(server: net.Server | http.Server | http2.Http2SecureServer, address: string, port: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${what} ${address}:${port}: ${err.message}`)));
    server.listen({ port, host: address, ipv6Only: net.isIPv6(address) }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

export class NsServer {
  readonly resolver: Resolver;
  private udp: UdpSocket[] = [];
  /** The batched-UDP addon, or why it cannot be used; null when turned off. */
  private readonly udpIo: { addon: UdpBatchAddon } | { reason: string } | null;
  private trimTimer: NodeJS.Timeout | null = null;
  private tcp: net.Server[] = [];
  private doh: http.Server | http2.Http2SecureServer | null = null;
  private conns = new Set<net.Socket>();
  private dohConns = new Set<net.Socket>();
  private workers: WorkerHandle[] = [];
  private closing = false;
  private requestId = 0;
  private readonly replies = new Map<number, (m: WorkerMessage) => void>();
  /** The ports actually bound (the configured ones, or the kernel's choice for 0). */
  port = 0;
  dohPort: number | null = null;
  private readonly started = Date.now();

  private constructor(private readonly opts: NsServerOptions) {
    this.resolver = new Resolver({ ...opts, fakeIp: opts.config.fake_ip ? openPool(opts.config.fake_ip, opts.log) : null });
    this.udpIo = (opts.udpBatch ?? process.env.CYFS_NS_UDP !== 'dgram') ? loadUdpBatch() : null;
  }

  /** Loads local data and block lists, binds every listener and starts the workers; throws when any of it fails. */
  static async start(opts: NsServerOptions): Promise<NsServer> {
    const cfg = opts.config;
    if (cfg.workers > 1 && (opts.sources?.length ?? 0) > 0) {
      throw new Error('workers > 1 needs every local record source to come from configuration; sources given in code run in one process only');
    }
    const s = new NsServer(opts);
    try {
      await s.listen();
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  private get addon(): UdpBatchAddon | null {
    return this.udpIo && 'addon' in this.udpIo ? this.udpIo.addon : null;
  }

  /** UDP and TCP on every address, all on one port. */
  private async bindDns(first: number): Promise<number> {
    const { config: cfg, log } = this.opts;
    const addon = this.addon;
    let port = first;
    for (const address of cfg.listen.addresses) {
      if (addon) {
        const { fd, port: bound } = bindBatch(addon, address, port);
        port = bound;
        this.udp.push({ kind: 'batch', fd, listener: serveUdpBatch(addon, fd, this.resolver, cfg.edns_udp_size, log) });
      } else {
        const socket = await listenUdp(address, port);
        this.udp.push({ kind: 'dgram', socket });
        port = socket.address().port;
        serveUdp(socket, this.resolver, cfg.edns_udp_size, log);
      }
      if (cfg.listen.tcp) {
        const server = net.createServer();
        this.tcp.push(server);
        serveTcp(server, this.resolver, cfg, log, this.conns);
        await listenTcp(server, address, port, 'TCP');
      }
    }
    return port;
  }

  private closeUdp(): void {
    for (const u of this.udp) {
      if (u.kind === 'dgram') u.socket.close();
      else this.addon!.close(u.listener);
    }
  }

  private async unbindDns(): Promise<void> {
    this.closeUdp();
    await Promise.all(this.tcp.map((t) => new Promise((r) => t.close(r))));
    this.udp = [];
    this.tcp = [];
  }

  private async listen(): Promise<void> {
    const { config: cfg, log } = this.opts;
    // With port 0 the kernel picks a free UDP port, which some other program may hold for TCP: then try another.
    for (let attempt = 1; ; attempt++) {
      try {
        this.port = await this.bindDns(cfg.listen.port);
        break;
      } catch (err) {
        await this.unbindDns();
        if (cfg.listen.port !== 0 || attempt >= 5) throw err;
      }
    }
    const port = this.port;
    if (cfg.doh) {
      const handler = dohHandler(this.resolver, cfg, log);
      // Loaded only with DNS over HTTPS configured, as upstream.ts does TLS.
      const load = createRequire(import.meta.url);
      this.doh = cfg.doh.tls
        ? (load('node:http2') as typeof http2).createSecureServer({ cert: readFileSync(cfg.doh.tls.cert_file), key: readFileSync(cfg.doh.tls.key_file), allowHTTP1: true }, handler)
        : (load('node:http') as typeof http).createServer(handler);
      this.doh.on('connection', (sock: net.Socket) => {
        this.dohConns.add(sock);
        sock.on('close', () => this.dohConns.delete(sock));
      });
      this.dohPort = await listenTcp(this.doh, cfg.doh.address, cfg.doh.port, 'DNS over HTTPS');
    }
    const addon = this.addon;
    if (addon) this.trimTimer = trimAfterTraffic(addon, this.resolver.stats);
    for (let i = 1; i < cfg.workers; i++) this.workers.push(this.spawn(i, 0));
    await Promise.all(this.workers.map((w) => w.ready));
    if (this.udpIo && 'reason' in this.udpIo) log.warn({ reason: this.udpIo.reason }, 'answering UDP through node:dgram, one datagram per call: batched UDP is not available');
    log.info(
      { udp: cfg.listen.addresses.map((a) => `${a}:${port}`), udp_io: addon ? 'recvmmsg' : 'dgram', tcp: cfg.listen.tcp, doh: this.dohPort === null ? null : `${cfg.doh!.address}:${this.dohPort}${cfg.doh!.path}`, processes: cfg.workers },
      'cyfs-ns listening',
    );
  }

  private spawn(index: number, restarts: number): WorkerHandle {
    const { config: cfg, log } = this.opts;
    const self = fileURLToPath(import.meta.url);
    const entry = fileURLToPath(new URL(`./worker${extname(self)}`, import.meta.url));
    // Batched sockets are plain descriptors: the worker inherits them (the same sockets, not copies).
    const fds = this.udp.flatMap((u) => (u.kind === 'batch' ? [u.fd] : []));
    const child = fork(entry, [], { execArgv: workerExecArgv(process.execArgv), stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds], serialization: 'advanced' });
    const handle: WorkerHandle = { index, child, restarts, ready: Promise.resolve() };
    handle.ready = new Promise<void>((resolve, reject) => {
      child.once('exit', (code, signal) => reject(new Error(`cyfs-ns worker ${index} exited (${code ?? signal}) before it was ready`)));
      child.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'stats-reply') this.replies.get(m.id)?.(m);
        else if (m.type === 'reload-failed') log.error({ worker: index, err: m.error }, 'worker could not reload');
      });
    });
    child.send({ type: 'init', config: cfg, index, batchFds: fds.map((_, i) => FIRST_INHERITED_FD + i) } satisfies WorkerMessage);
    for (const u of this.udp) if (u.kind === 'dgram') child.send({ type: 'udp' } satisfies WorkerMessage, u.socket);
    child.on('exit', (code, signal) => {
      handle.child = null;
      if (this.closing) return;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(handle.restarts, 6));
      log.error({ worker: index, code, signal, restart_in_ms: delay }, 'cyfs-ns worker exited; restarting');
      setTimeout(() => {
        if (this.closing) return;
        const next = this.spawn(index, handle.restarts + 1);
        this.workers[this.workers.indexOf(handle)] = next;
        next.ready.catch((err) => log.error({ err: (err as Error).message }, 'cyfs-ns worker failed to start'));
      }, delay).unref();
    });
    return handle;
  }

  private askWorker(w: WorkerHandle): Promise<ResolverPart | null> {
    const child = w.child;
    if (!child || !child.connected) return Promise.resolve(null);
    const id = ++this.requestId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        resolve(null);
      }, 2000);
      this.replies.set(id, (m) => {
        clearTimeout(timer);
        this.replies.delete(id);
        resolve(m.type === 'stats-reply' ? m.part : null);
      });
      child.send({ type: 'stats', id } satisfies WorkerMessage);
    });
  }

  /** Statistics of every process, merged: what an admin API or `buckyos ns` reports. */
  async stats(): Promise<NsStats> {
    const fromWorkers = await Promise.all(this.workers.map((w) => this.askWorker(w)));
    const parts = [this.resolver.part(), ...fromWorkers.filter((p): p is ResolverPart => p !== null)];
    const m = mergeParts(parts);
    const sum = (f: (p: ResolverPart) => number) => parts.reduce((a, p) => a + f(p), 0);
    const upstreams = new Map<string, NsStats['upstreams'][number]>();
    for (const p of parts) {
      for (const u of p.upstreams) {
        const key = `${u.group} ${u.label}`;
        const prev = upstreams.get(key);
        if (!prev) upstreams.set(key, { ...u });
        else {
          prev.rtt_ms = prev.queries + u.queries === 0 ? 0 : Math.round(((prev.rtt_ms * prev.queries + u.rtt_ms * u.queries) / (prev.queries + u.queries)) * 100) / 100;
          prev.queries += u.queries;
          prev.failures += u.failures;
          prev.down ||= u.down;
        }
      }
    }
    const hits = m.by_source.cache;
    const top = this.opts.config.stats.top;
    const problems = this.resolver.problems();
    return {
      uptime_s: Math.round((Date.now() - this.started) / 1000),
      processes: parts.length,
      queries: m.queries,
      by_transport: m.by_transport,
      by_source: m.by_source,
      rcodes: m.rcodes,
      dropped: m.dropped,
      truncated: m.truncated,
      cache: {
        entries: sum((p) => p.cache_entries),
        local_entries: sum((p) => p.local_entries),
        hits,
        misses: m.cache_misses,
        hit_ratio: hits + m.cache_misses === 0 ? 0 : Math.round((hits / (hits + m.cache_misses)) * 1000) / 1000,
        evictions: sum((p) => p.evictions),
        prefetches: m.prefetches,
        stale_served: m.by_source.stale,
      },
      latency: percentiles(m.latency_buckets),
      top_names: m.top_names.slice(0, top).map((e) => ({ name: e.label, count: e.count })),
      top_blocked: m.top_blocked.slice(0, top).map((e) => ({ name: e.label, count: e.count })),
      upstreams: [...upstreams.values()],
      block_lists: this.resolver.blockListSizes(),
      trusted: mergeTrusted(parts),
      problems: problems.slice(0, 100),
      pending: sum((p) => p.pending),
    };
  }

  /** Re-reads hosts files and block lists everywhere and empties the caches; throws (changing nothing here) when a
   * file cannot be read. */
  reload(): void {
    this.resolver.reload();
    for (const w of this.workers) w.child?.send({ type: 'reload' } satisfies WorkerMessage);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.workers.map(async (w) => {
        const child = w.child;
        if (!child) return;
        const exited = new Promise((r) => child.once('exit', r));
        if (child.connected) child.send({ type: 'stop' } satisfies WorkerMessage);
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(killer);
      }),
    );
    if (this.trimTimer) clearInterval(this.trimTimer);
    this.closeUdp();
    for (const c of this.conns) c.destroy();
    await Promise.all(this.tcp.map((t) => new Promise((r) => t.close(r))));
    if (this.doh) {
      const doh = this.doh;
      const closed = new Promise((r) => doh.close(r));
      for (const c of this.dohConns) c.destroy();
      await closed;
    }
    this.resolver.close();
  }
}
