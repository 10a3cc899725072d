// Test support for cyfs-ns: a scriptable DNS server to stand in for upstreams (real sockets, real wire format, encoded
// with dns-packet so that cyfs-ns's own codec is checked against an independent one), a client, and TLS material.
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';

export interface Behaviour {
  answers?: dnsPacket.Answer[];
  authorities?: dnsPacket.Answer[];
  rcode?: number;
  /** Answer after this long. */
  delayMs?: number;
  /** Never answer. */
  drop?: boolean;
}

export function soa(zone: string, minimum: number, ttl = 3600): dnsPacket.Answer {
  return {
    name: zone, type: 'SOA', ttl,
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  } as dnsPacket.Answer;
}

const key = (name: string, type: string) => `${name.toLowerCase()} ${type}`;

/** A DNS server answering from a script, over UDP and TCP (and TLS when given a certificate). */
export class ScriptedDns {
  private script = new Map<string, Behaviour>();
  /** Queries seen, by "name TYPE". */
  readonly hits = new Map<string, number>();
  /** Set to make every query go unanswered (a dead upstream). */
  dead = false;
  private udp!: dgram.Socket;
  private tcp!: net.Server;
  private tlsServer: tls.Server | null = null;
  private sockets = new Set<net.Socket>();
  port = 0;
  tlsPort = 0;
  private closed = false;

  set(name: string, type: string, b: Behaviour): void {
    this.script.set(key(name, type), b);
  }

  count(name: string, type: string): number {
    return this.hits.get(key(name, type)) ?? 0;
  }

  static async start(opts: { cert?: string; key?: string } = {}): Promise<ScriptedDns> {
    const s = new ScriptedDns();
    await s.bindSamePort();
    if (opts.cert && opts.key) {
      s.tlsServer = tls.createServer({ cert: opts.cert, key: opts.key }, (sock) => s.stream(sock));
      await new Promise<void>((r) => s.tlsServer!.listen(0, '127.0.0.1', () => r()));
      s.tlsPort = (s.tlsServer.address() as net.AddressInfo).port;
    }
    return s;
  }

  /** UDP and TCP on one port. The kernel picks a free UDP port, but another process (a test file running beside this
   * one) may hold the same number over TCP; without a retry the listen error would leave the caller awaiting forever. */
  private async bindSamePort(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.udp = dgram.createSocket('udp4');
      this.udp.on('message', (msg, rinfo) => void this.answer(msg, false).then((out) => out && !this.closed && this.udp.send(out, rinfo.port, rinfo.address)));
      await new Promise<void>((resolve, reject) => {
        this.udp.once('error', reject);
        this.udp.bind(0, '127.0.0.1', () => resolve());
      });
      this.port = this.udp.address().port;
      this.tcp = net.createServer((sock) => this.stream(sock));
      try {
        await new Promise<void>((resolve, reject) => {
          this.tcp.once('error', reject);
          this.tcp.listen(this.port, '127.0.0.1', () => resolve());
        });
        return;
      } catch (err) {
        this.udp.close();
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 10) throw err;
      }
    }
  }

  private stream(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.answer(Buffer.from(msg), true).then((out) => {
          if (!out || sock.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        });
      }
    });
  }

  private async answer(msg: Buffer, stream: boolean): Promise<Buffer | null> {
    if (this.dead) return null;
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    if (!question) return null;
    const k = key(question.name, question.type);
    this.hits.set(k, (this.hits.get(k) ?? 0) + 1);
    const b = this.script.get(k) ?? { rcode: 3, authorities: [soa(question.name.split('.').slice(-1)[0] || '.', 60)] };
    if (b.drop) return null;
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    if (this.dead) return null;
    const opt = q.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined;
    const flags = dnsPacket.RECURSION_AVAILABLE | (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    const base = {
      type: 'response' as const, id: q.id, flags: flags | (b.rcode ?? 0), questions: q.questions,
      additionals: opt ? [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer] : [],
    };
    const full = dnsPacket.encode({ ...base, answers: b.answers ?? [], authorities: b.authorities ?? [] });
    const limit = opt ? opt.udpPayloadSize : 512;
    if (!stream && full.length > limit) return dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE });
    return full;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.udp.close();
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.tcp.close(r));
    if (this.tlsServer) await new Promise((r) => this.tlsServer!.close(r));
  }
}

/** A record as dns-packet decodes it (its Answer type is a union with OPT, which has no ttl or data). */
export interface Rec {
  name: string;
  type: string;
  ttl: number;
  data: unknown;
}

export function recs(list: readonly dnsPacket.Answer[] | undefined): Rec[] {
  return (list ?? []) as unknown as Rec[];
}

export interface Asked {
  raw: Buffer;
  msg: dnsPacket.DecodedPacket;
  rcode: number;
  flags: number;
  answers: Rec[];
}

export interface AskOptions {
  tcp?: boolean;
  /** EDNS payload size to advertise; false sends no OPT. Default 1232. */
  edns?: number | false;
  dnssecOk?: boolean;
  host?: string;
  localAddress?: string;
  timeoutMs?: number;
  id?: number;
}

export function queryPacket(name: string, type: string, opts: AskOptions = {}): Buffer {
  const edns = opts.edns ?? 1232;
  return dnsPacket.encode({
    type: 'query', id: opts.id ?? Math.floor(Math.random() * 65536), flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    additionals: edns === false ? [] : [{ name: '.', type: 'OPT', udpPayloadSize: edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as dnsPacket.Answer],
  });
}

function decoded(raw: Buffer): Asked {
  const msg = dnsPacket.decode(raw);
  const flags = raw.readUInt16BE(2);
  return { raw, msg, rcode: flags & 0xf, flags, answers: recs(msg.answers) };
}

/** Sends raw bytes over UDP; resolves with the answer, or null when none came within the timeout. */
export function sendUdp(port: number, packet: Buffer, opts: { host?: string; localAddress?: string; timeoutMs?: number } = {}): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(null);
    }, opts.timeoutMs ?? 3000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      s.close();
      reject(err);
    });
    s.bind(0, opts.localAddress ?? '127.0.0.1', () => s.send(packet, port, opts.host ?? '127.0.0.1'));
  });
}

/** Sends raw bytes over one TCP connection (length-prefixed) and resolves with the first answer, or null. */
export function sendTcp(port: number, packet: Buffer, opts: { host?: string; timeoutMs?: number; raw?: boolean } = {}): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: opts.host ?? '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const done = (v: Buffer | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), opts.timeoutMs ?? 3000);
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(packet.length);
    sock.write(opts.raw ? packet : Buffer.concat([len, packet]));
  });
}

/** One query; throws when no answer comes. */
export async function ask(port: number, name: string, type: string, opts: AskOptions = {}): Promise<Asked> {
  const packet = queryPacket(name, type, opts);
  const raw = opts.tcp ? await sendTcp(port, packet, opts) : await sendUdp(port, packet, opts);
  if (!raw) throw new Error(`no answer for ${name} ${type} on port ${port}`);
  return decoded(raw);
}

export { decoded as decodeAnswer };

/** A self-signed certificate for `name` (and 127.0.0.1), made with openssl in a temporary directory. */
export function selfSignedCert(name: string): { cert: string; key: string; certFile: string; keyFile: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ns-cert-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name},IP:127.0.0.1`, '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
