// Upstream servers over UDP (TCP when an answer comes back truncated), TCP, DNS over TLS (RFC 7858) and DNS over
// HTTPS (RFC 8484, HTTP/2), with health tracking, groups that try their servers in order or all at once, and
// routing of name suffixes to groups.
//
// UDP queries leave from a small pool of sockets that is renewed as it is used, with random ids: an off-path attacker
// has to guess both the port and the id (the defence against Kaminsky-style cache poisoning), and an answer is only
// accepted from the address it was sent to, for the question that was asked.
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import type http2 from 'node:http2';
import { createRequire } from 'node:module';
import net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../lib/log/logger.ts';
import type { GroupConfig, NsConfig, UpstreamConfig } from './config.ts';
import { formatIPv6, parseIPv6 } from './ip.ts';
import { type AnswerInfo, RCODE, inspectAnswer } from './wire.ts';

export class UpstreamError extends Error {}

// TLS and HTTP/2 load only when an upstream uses them: about 1.5 MB a process saves otherwise, against a memory
// target of 64 MB with 100,000 cached answers.
const load = createRequire(import.meta.url);
const tlsModule = () => load('node:tls') as typeof tls;
const http2Module = () => load('node:http2') as typeof http2;

/** Sends one query (its id is the transport's to choose) and resolves with the answer carrying the same id. */
export interface Transport {
  exchange(query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer>;
  close(): void;
}

const idPool = Buffer.alloc(4096);
let idAt = idPool.length;

function randomId(): number {
  if (idAt >= idPool.length) {
    randomFillSync(idPool);
    idAt = 0;
  }
  const id = idPool.readUInt16BE(idAt);
  idAt += 2;
  return id;
}

function sameQuestion(a: Buffer, b: Buffer, end: number): boolean {
  if (a.length < end || b.length < end) return false;
  for (let i = 12; i < end; i++) {
    const x = a[i] >= 0x41 && a[i] <= 0x5a ? a[i] | 0x20 : a[i];
    const y = b[i] >= 0x41 && b[i] <= 0x5a ? b[i] | 0x20 : b[i];
    if (x !== y) return false;
  }
  return true;
}

interface Pending {
  query: Buffer;
  questionEnd: number;
  resolve(b: Buffer): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** Queries per UDP socket before it is replaced by one on a fresh random port. */
const UDP_SOCKET_USES = 128;
const UDP_POOL = 4;

class UdpSocket {
  readonly socket: dgram.Socket;
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;

  constructor(private readonly address: string, private readonly port: number, v6: boolean) {
    this.socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: (a, _o, cb) => cb(null, a, v6 ? 6 : 4) });
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.socket.on('error', () => this.fail(new UpstreamError('socket error')));
    this.socket.bind(0);
    // A pooled socket waiting for its next query must not keep the process alive by itself: a query in flight has its
    // own timer, and a server keeps running on its listening sockets. Without this, a socket opened by a prefetch as the
    // server closed would hold the process open.
    this.socket.unref();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || rinfo.port !== this.port || rinfo.address !== this.address) return;
    const id = (msg[0] << 8) | msg[1];
    const p = this.pending.get(id);
    if (!p || !sameQuestion(msg, p.query, p.questionEnd)) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(msg);
    this.closeIfDone();
  }

  exchange(query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    let id = randomId();
    while (this.pending.has(id)) id = randomId();
    const buf = Buffer.from(query);
    buf.writeUInt16BE(id, 0);
    this.uses++;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamError(`no answer within ${timeoutMs} ms`));
        this.closeIfDone();
      }, timeoutMs);
      this.pending.set(id, { query: buf, questionEnd, resolve, reject, timer });
      this.socket.send(buf, this.port, this.address, (err) => {
        if (!err) return;
        const p = this.pending.get(id);
        if (!p) return;
        this.pending.delete(id);
        clearTimeout(p.timer);
        reject(new UpstreamError(`send failed: ${err.message}`));
      });
    });
  }

  retire(): void {
    this.retired = true;
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (this.retired && this.pending.size === 0) this.socket.close();
  }

  fail(err: Error): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    if (!this.retired) {
      this.retired = true;
      this.socket.close();
    }
  }
}

export class UdpTransport implements Transport {
  private pool: UdpSocket[] = [];
  private next = 0;
  private readonly address: string;
  private readonly v6: boolean;

  constructor(address: string, private readonly port: number) {
    const v6 = parseIPv6(address);
    this.v6 = v6 !== undefined;
    // rinfo carries the canonical text form; compare against the same.
    this.address = v6 ? formatIPv6(v6) : address;
  }

  exchange(query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    const i = this.next++ % UDP_POOL;
    let s = this.pool[i];
    if (!s || s.retired || s.uses >= UDP_SOCKET_USES) {
      s?.retire();
      s = new UdpSocket(this.address, this.port, this.v6);
      this.pool[i] = s;
    }
    return s.exchange(query, questionEnd, timeoutMs);
  }

  close(): void {
    for (const s of this.pool) s.fail(new UpstreamError('upstream closed'));
    this.pool = [];
  }
}

/** One TCP or TLS connection carrying pipelined queries (RFC 7766 §6.2.1), answers matched by id. */
class StreamConn {
  readonly pending = new Map<number, Pending>();
  private chunks: Buffer[] = [];
  closed = false;
  answered = 0;
  private idle: NodeJS.Timeout | null = null;

  constructor(readonly socket: net.Socket, private readonly idleMs: number, private readonly onClosed: () => void) {
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('error', (err) => this.close(new UpstreamError(`connection failed: ${err.message}`)));
    socket.on('close', () => this.close(new UpstreamError('connection closed before the answer')));
    this.armIdle();
  }

  private armIdle(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = this.pending.size === 0 ? setTimeout(() => this.close(new UpstreamError('idle')), this.idleMs) : null;
  }

  private onData(c: Buffer): void {
    this.chunks.push(c);
    let buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      this.deliver(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
    }
    this.chunks = buf.length > 0 ? [buf] : [];
  }

  private deliver(msg: Buffer): void {
    if (msg.length < 12) return this.close(new UpstreamError('upstream sent a message shorter than a header'));
    const id = (msg[0] << 8) | msg[1];
    const p = this.pending.get(id);
    if (!p || !sameQuestion(msg, p.query, p.questionEnd)) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    this.answered++;
    p.resolve(Buffer.from(msg));
    this.armIdle();
  }

  exchange(query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    let id = randomId();
    while (this.pending.has(id)) id = randomId();
    const framed = Buffer.allocUnsafe(query.length + 2);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    framed.writeUInt16BE(id, 2);
    return new Promise<Buffer>((resolve, reject) => {
      // A stream that does not answer in time is assumed stuck: close it, and the next query opens a fresh one.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamError(`no answer within ${timeoutMs} ms`));
        this.close(new UpstreamError('connection abandoned after a timeout'));
      }, timeoutMs);
      this.pending.set(id, { query: framed.subarray(2), questionEnd, resolve, reject, timer });
      this.armIdle();
      this.socket.write(framed);
    });
  }

  close(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idle) clearTimeout(this.idle);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.socket.destroy();
    this.onClosed();
  }
}

function trustedCas(caFile: string | null): string[] | undefined {
  return caFile ? [...tlsModule().rootCertificates, readFileSync(caFile, 'utf8')] : undefined;
}

/** TCP or TLS: one connection at a time, kept open while used and closed after `idleMs` without queries. */
export class StreamTransport implements Transport {
  private conn: StreamConn | null = null;

  constructor(private readonly connect: () => net.Socket, private readonly idleMs: number) {}

  private get(): StreamConn {
    if (!this.conn || this.conn.closed) {
      const conn: StreamConn = new StreamConn(this.connect(), this.idleMs, () => {
        if (this.conn === conn) this.conn = null;
      });
      this.conn = conn;
    }
    return this.conn;
  }

  async exchange(query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    const conn = this.get();
    const reused = conn.answered > 0;
    try {
      return await conn.exchange(query, questionEnd, timeoutMs);
    } catch (err) {
      // A server may close an idle connection just as we use it (RFC 7766 §6.2.3): one retry on a new one.
      if (reused && conn.closed && (err as Error).message.startsWith('connection closed')) return this.get().exchange(query, questionEnd, timeoutMs);
      throw err;
    }
  }

  close(): void {
    this.conn?.close(new UpstreamError('upstream closed'));
  }
}

export function tcpTransport(address: string, port: number, idleMs: number): StreamTransport {
  return new StreamTransport(() => net.connect({ host: address, port }), idleMs);
}

export function tlsTransport(u: UpstreamConfig, idleMs: number): StreamTransport {
  const ca = trustedCas(u.ca_file);
  const tls = tlsModule();
  return new StreamTransport(
    () => tls.connect({ host: u.address, port: u.port, servername: net.isIP(u.server_name) ? undefined : u.server_name, ca, ALPNProtocols: ['dot'], checkServerIdentity: (_h, cert) => tls.checkServerIdentity(u.server_name, cert) }),
    idleMs,
  );
}

/** DNS over HTTPS: POSTs of application/dns-message with id 0 (RFC 8484 §4.1) on one HTTP/2 session. */
export class DohTransport implements Transport {
  private session: http2.ClientHttp2Session | null = null;
  private readonly ca: string[] | undefined;

  constructor(private readonly u: UpstreamConfig, private readonly idleMs: number) {
    this.ca = trustedCas(u.ca_file);
  }

  private get(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const u = this.u;
    const tls = tlsModule();
    const authority = `https://${net.isIPv6(u.host) ? `[${u.host}]` : u.host}:${u.port}`;
    const session = http2Module().connect(authority, {
      createConnection: () =>
        tls.connect({
          host: u.address, port: u.port, servername: net.isIP(u.server_name) ? undefined : u.server_name, ca: this.ca, ALPNProtocols: ['h2'],
          checkServerIdentity: (_h, cert) => tls.checkServerIdentity(u.server_name, cert),
        }),
    });
    const drop = () => {
      if (this.session === session) this.session = null;
    };
    session.on('error', drop);
    session.on('close', drop);
    session.on('goaway', drop);
    session.setTimeout(this.idleMs, () => session.close());
    this.session = session;
    return session;
  }

  exchange(query: Buffer, _questionEnd: number, timeoutMs: number): Promise<Buffer> {
    const body = Buffer.from(query);
    body.writeUInt16BE(0, 0);
    return new Promise<Buffer>((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.get();
      } catch (err) {
        return reject(new UpstreamError(`cannot connect: ${(err as Error).message}`));
      }
      const req = session.request({
        ':method': 'POST', ':path': this.u.path, 'content-type': 'application/dns-message', accept: 'application/dns-message', 'content-length': body.length,
      });
      let settled = false;
      const finish = (err: Error | null, msg?: Buffer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          req.close(http2Module().constants.NGHTTP2_CANCEL);
          reject(err);
        } else resolve(msg!);
      };
      const timer = setTimeout(() => finish(new UpstreamError(`no answer within ${timeoutMs} ms`)), timeoutMs);
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('response', (headers) => {
        const status = headers[':status'];
        const type = String(headers['content-type'] ?? '');
        if (status !== 200) finish(new UpstreamError(`HTTP status ${status}`));
        else if (!type.startsWith('application/dns-message')) finish(new UpstreamError(`content type "${type}" is not application/dns-message`));
      });
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 65535) finish(new UpstreamError('answer larger than a DNS message can be'));
        else chunks.push(c);
      });
      req.on('end', () => finish(null, Buffer.concat(chunks)));
      req.on('error', (err) => finish(new UpstreamError(`request failed: ${err.message}`)));
      req.end(body);
    });
  }

  close(): void {
    this.session?.destroy();
    this.session = null;
  }
}

/** Health of one upstream: after `failThreshold` failures in a row it is passed over for `downMs`. */
export class Upstream {
  queries = 0;
  failures = 0;
  consecutive = 0;
  downUntil = 0;
  /** Smoothed round-trip time of answered queries. */
  rttMs = 0;
  private readonly main: Transport;
  private readonly tcp: Transport | null;

  constructor(readonly cfg: UpstreamConfig, readonly group: string, private readonly health: NsConfig['upstreams']['health'], idleMs: number, private readonly log: Logger) {
    switch (cfg.protocol) {
      case 'udp':
        this.main = new UdpTransport(cfg.address, cfg.port);
        this.tcp = tcpTransport(cfg.address, cfg.port, idleMs);
        break;
      case 'tcp':
        this.main = tcpTransport(cfg.address, cfg.port, idleMs);
        this.tcp = null;
        break;
      case 'tls':
        this.main = tlsTransport(cfg, idleMs);
        this.tcp = null;
        break;
      case 'https':
        this.main = new DohTransport(cfg, idleMs);
        this.tcp = null;
        break;
    }
  }

  get label(): string {
    return this.cfg.url;
  }

  isDown(now: number): boolean {
    return this.downUntil > now;
  }

  /** One query; answers that fail to parse or answer another question count as failures, like timeouts. */
  async exchange(query: Buffer, questionEnd: number, qtype: number, timeoutMs: number): Promise<{ resp: Buffer; info: AnswerInfo }> {
    const started = performance.now();
    this.queries++;
    try {
      let resp = await this.main.exchange(query, questionEnd, timeoutMs);
      let info = inspectAnswer(resp, query, questionEnd, qtype);
      if (typeof info !== 'string' && info.truncated && this.tcp) {
        resp = await this.tcp.exchange(query, questionEnd, Math.max(1, timeoutMs - (performance.now() - started)));
        info = inspectAnswer(resp, query, questionEnd, qtype);
      }
      if (typeof info === 'string') throw new UpstreamError(info);
      const rtt = performance.now() - started;
      this.rttMs = this.rttMs === 0 ? rtt : this.rttMs * 0.8 + rtt * 0.2;
      if (this.downUntil !== 0) this.log.info({ upstream: this.label }, 'upstream answers again');
      this.consecutive = 0;
      this.downUntil = 0;
      return { resp, info };
    } catch (err) {
      this.failures++;
      if (++this.consecutive >= this.health.fail_threshold) {
        if (this.downUntil === 0) this.log.warn({ upstream: this.label, err: (err as Error).message, failures: this.consecutive }, 'upstream marked down');
        this.downUntil = Date.now() + this.health.down_ms;
      }
      throw err instanceof UpstreamError ? err : new UpstreamError((err as Error).message);
    }
  }

  close(): void {
    this.main.close();
    this.tcp?.close();
  }
}

/** RCODEs that say "this server cannot help": another server may. NXDOMAIN and NOERROR are answers. */
function usable(info: AnswerInfo): boolean {
  return info.rcode === RCODE.NOERROR || info.rcode === RCODE.NXDOMAIN;
}

export interface GroupAnswer {
  resp: Buffer;
  info: AnswerInfo;
  upstream: Upstream;
}

export class UpstreamGroup {
  constructor(readonly name: string, readonly cfg: GroupConfig, readonly upstreams: Upstream[]) {}

  /** Healthy servers in configured order; when none is, all of them, soonest back first (better a slow try than
   * certain failure). */
  private order(): Upstream[] {
    const now = Date.now();
    const healthy = this.upstreams.filter((u) => !u.isDown(now));
    return healthy.length > 0 ? healthy : [...this.upstreams].sort((a, b) => a.downUntil - b.downUntil);
  }

  async resolve(query: Buffer, questionEnd: number, qtype: number): Promise<GroupAnswer> {
    const order = this.order();
    const reasons: string[] = [];
    const attempt = async (u: Upstream): Promise<GroupAnswer> => {
      try {
        const r = await u.exchange(query, questionEnd, qtype, this.cfg.timeout_ms);
        if (!usable(r.info)) throw new UpstreamError(`answered ${r.info.rcode === RCODE.SERVFAIL ? 'SERVFAIL' : `rcode ${r.info.rcode}`}`);
        return { ...r, upstream: u };
      } catch (err) {
        reasons.push(`${u.label}: ${(err as Error).message}`);
        throw err;
      }
    };
    if (this.cfg.strategy === 'parallel') {
      try {
        return await Promise.any(order.map(attempt));
      } catch {
        throw new UpstreamError(reasons.join('; '));
      }
    }
    for (const u of order) {
      try {
        return await attempt(u);
      } catch {
        // the next server in order
      }
    }
    throw new UpstreamError(reasons.join('; '));
  }

  close(): void {
    for (const u of this.upstreams) u.close();
  }
}

/** Suffix routes to groups; the longest matching suffix wins, and everything else goes to the group "default". */
export class Router {
  readonly groups = new Map<string, UpstreamGroup>();
  private routes = new Map<string, UpstreamGroup>();

  constructor(cfg: NsConfig, log: Logger) {
    for (const [name, g] of Object.entries(cfg.upstreams.groups)) {
      this.groups.set(name, new UpstreamGroup(name, g, g.servers.map((s) => new Upstream(s, name, cfg.upstreams.health, cfg.limits.tcp_idle_ms, log))));
    }
    for (const r of cfg.routes) this.routes.set(r.suffix, this.groups.get(r.group)!);
  }

  /** The group for a name, or undefined when there is no route and no "default" group. */
  route(name: string): UpstreamGroup | undefined {
    if (this.routes.size > 0) {
      for (let n = name; ; ) {
        const g = this.routes.get(n);
        if (g) return g;
        const dot = n.indexOf('.');
        if (dot < 0) break;
        n = n.slice(dot + 1);
      }
    }
    return this.groups.get('default');
  }

  upstreams(): Upstream[] {
    return [...this.groups.values()].flatMap((g) => g.upstreams);
  }

  close(): void {
    for (const g of this.groups.values()) g.close();
  }
}
