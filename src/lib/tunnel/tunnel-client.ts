// The dialling end of device-to-device tunnels (DESIGN §8): one HTTP/2 session per peer device, over TLS 1.3, that
// every request to that device shares. A peer is named by its device key; whatever answers at its address must hold
// that key, or nothing is sent to it. Broken sessions are re-established in the background with exponential back-off.
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Readable, Transform, pipeline } from 'node:stream';
import { type KeyPair, privateKeyToPem, publicKeyFromB64 } from '../identity/keys.ts';
import { certPublicKeyB64, x509PublicKeyB64 } from '../identity/tls-certs.ts';
import {
  CONNECTION_WINDOW, DEFAULT_PING_INTERVAL_MS, H2_SETTINGS, MAX_SESSION_MEMORY, REFUSAL_CODE, TLS_OPTIONS, TunnelError,
  WRITE_PIECE, keepAlive, parseAddress,
} from './common.ts';

export interface TunnelPeer {
  /** The device's name in the zone; sessions are kept per name. */
  name: string;
  /** The device's public key (base64url, as KeyPair.publicKeyB64): the only thing the other end is trusted by. */
  key: string;
  /** host:port; IPv6 as [addr]:port. */
  address: string;
}

export interface TunnelRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Readable | Buffer;
  /** Cancels the request (and its stream) when aborted. */
  signal?: AbortSignal;
}

/** A request the peer refused before processing any of it (RST_STREAM REFUSED_STREAM): safe to send again. */
class UnprocessedError extends TunnelError {
  constructor(message: string) {
    super('UNAVAILABLE', message, undefined, true);
  }
}

/** The same failure, marked as one that sent nothing (a session's cause is shared by every request that met it). */
function unsent(e: TunnelError): TunnelError {
  return e.unsent ? e : new TunnelError(e.code, e.message, e.retryAt, true);
}

export interface TunnelResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The response body. The caller must consume or destroy it, and should handle its 'error' (the peer may vanish). */
  body: Readable;
}

export interface TunnelClientOptions {
  /** This device's key and a certificate for it; both absent = an anonymous client (device enrolment only). */
  key?: KeyPair;
  certPem?: string;
  pingIntervalMs?: number;
  /** Delay before the first retry, doubling per failed attempt up to maxMs. Defaults: 500 ms to 30 s. */
  backoff?: { minMs: number; maxMs: number };
  /** How long a connection attempt (TCP, TLS and the key check) may take. Default 10 s. */
  connectTimeoutMs?: number;
  /** A session to a peer failed or broke; the next attempt is in `delayMs`. For the log. */
  onBackoff?(peer: string, delayMs: number, cause: TunnelError): void;
  /** A session to a peer was established and its key checked. */
  onConnect?(peer: string): void;
}

export type TunnelState = 'connected' | 'connecting' | 'backoff' | 'idle';

const DEFAULT_BACKOFF = { minMs: 500, maxMs: 30_000 };
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

// Headers that describe one HTTP/1 connection and are forbidden in HTTP/2 (RFC 9113 §8.2.2): a gateway forwarding an
// HTTP/1 request would otherwise have the request thrown out.
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** One peer's connection: its current session (or attempt), and its back-off after failures. */
interface Link {
  peer: TunnelPeer;
  state: TunnelState;
  session?: ClientHttp2Session;
  /** Settles when the current attempt is established and checked, or failed. */
  ready?: Promise<ClientHttp2Session>;
  /** Failed attempts since the last session that worked; sets the back-off delay. */
  failures: number;
  lastError?: TunnelError;
  retryAt?: number;
  retryTimer?: NodeJS.Timeout;
}

/** A stage that passes a body's chunks on, cutting those larger than WRITE_PIECE into views of that size. It pushes
 * all the pieces of a chunk at once: they are views of memory the chunk holds anyway. */
export function writePieces(): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (chunk.length <= WRITE_PIECE) this.push(chunk);
      else for (let at = 0; at < chunk.length; at += WRITE_PIECE) this.push(chunk.subarray(at, at + WRITE_PIECE));
      done();
    },
  });
}

export class TunnelClient {
  private readonly links = new Map<string, Link>();
  /** Why each session ended, first cause wins: what requests waiting on it, or running on it, report. */
  private readonly causes = new WeakMap<ClientHttp2Session, TunnelError>();
  /** Each session's TLS socket: destroying a session that is still connecting leaves its socket to finish first. */
  private readonly sockets = new WeakMap<ClientHttp2Session, TLSSocket>();
  /** Every socket not yet closed, so close() returns only once they are all gone. */
  private readonly live = new Map<TLSSocket, Promise<void>>();
  private readonly tls: { key?: string; cert?: string };
  private readonly backoff: { minMs: number; maxMs: number };
  private closed = false;

  constructor(private readonly opts: TunnelClientOptions) {
    if ((opts.key === undefined) !== (opts.certPem === undefined)) {
      throw new Error('TunnelClient needs both key and certPem (a device client) or neither (an anonymous client)');
    }
    if (opts.key !== undefined && opts.certPem !== undefined) {
      const certKey = certPublicKeyB64(opts.certPem);
      if (certKey !== opts.key.publicKeyB64) throw new Error(`TunnelClient certPem is for key ${certKey}, not this device's key ${opts.key.publicKeyB64}`);
      this.tls = { key: privateKeyToPem(opts.key.privateKey), cert: opts.certPem };
    } else {
      this.tls = {};
    }
    const b = opts.backoff ?? DEFAULT_BACKOFF;
    if (!(b.minMs > 0 && b.maxMs >= b.minMs)) throw new Error(`backoff needs 0 < minMs <= maxMs, got ${b.minMs} and ${b.maxMs}`);
    this.backoff = b;
  }

  /**
   * Sends one request to `peer` on its session: opened on first use, reused by every request, re-opened with
   * back-off after a failure. While backing off, requests fail at once with the last failure's code and `retryAt`.
   * Resolves when the response headers arrive. A changed address or key for a known name replaces its session.
   */
  async request(peer: TunnelPeer, req: TunnelRequest): Promise<TunnelResponse> {
    try {
      return await this.attempt(peer, req);
    } catch (err) {
      // A stream the peer refused unprocessed (it is closing its session: a restart) is sent once more, on a new
      // session, when its body can be sent again; a streamed body is gone, and that caller hears it is safe to retry.
      if (err instanceof UnprocessedError && (req.body === undefined || Buffer.isBuffer(req.body)) && !req.signal?.aborted) return this.attempt(peer, req);
      throw err;
    }
  }

  private async attempt(peer: TunnelPeer, req: TunnelRequest): Promise<TunnelResponse> {
    if (this.closed) throw new TunnelError('CLOSED', 'the tunnel client is closed');
    const link = this.link(peer);
    if (link.state === 'backoff') {
      const last = link.lastError!;
      throw new TunnelError(last.code, `${last.message}; next attempt in ${Math.max(0, link.retryAt! - Date.now())} ms`, link.retryAt, true);
    }
    if (link.state === 'idle') this.connect(link);
    let session: ClientHttp2Session;
    try {
      session = await link.ready!;
    } catch (e) {
      throw e instanceof TunnelError ? unsent(e) : e;
    }
    return this.send(link, session, req);
  }

  /** Drops the session to a peer (e.g. its address changed); the next request opens a new one at once. */
  drop(name: string): void {
    const link = this.links.get(name);
    if (link === undefined) return;
    this.links.delete(name);
    this.shut(link, new TunnelError('CLOSED', `the session to ${name} was dropped`));
  }

  state(name: string): TunnelState {
    return this.links.get(name)?.state ?? 'idle';
  }

  /** Closes every session and stops every retry; requests still waiting fail with CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) this.shut(link, new TunnelError('CLOSED', 'the tunnel client is closed'));
    this.links.clear();
    await Promise.all(this.live.values());
  }

  // ---- sessions ------------------------------------------------------------------------------------------------

  private link(peer: TunnelPeer): Link {
    const existing = this.links.get(peer.name);
    if (existing !== undefined && existing.peer.address === peer.address && existing.peer.key === peer.key) return existing;
    parseAddress(peer.address);
    try {
      publicKeyFromB64(peer.key);
    } catch {
      throw new TunnelError('INVALID_PEER', `peer ${peer.name} has a malformed key: an Ed25519 public key is 43 base64url characters`);
    }
    // Another address for the same device is a hint, not a reason to cut what works: callers may know a device by
    // different addresses for a while (a route written before it moved, the directory's newer one), and replacing the
    // session at each would cancel the other's requests in turn. A working or opening session stays and the next
    // connection uses the address given last; one backing off from the old address tries the new one at once.
    if (existing !== undefined && existing.peer.key === peer.key && existing.state !== 'backoff' && existing.state !== 'idle') {
      existing.peer = { ...peer };
      return existing;
    }
    if (existing !== undefined) this.drop(peer.name);
    const link: Link = { peer: { ...peer }, state: 'idle', failures: 0 };
    this.links.set(peer.name, link);
    return link;
  }

  private connect(link: Link): void {
    const { name, address, key } = link.peer;
    const { host, port } = parseAddress(address);
    link.state = 'connecting';
    link.retryAt = undefined;
    let socket: TLSSocket | undefined;
    const session = h2connect(`https://${address}`, {
      settings: H2_SETTINGS,
      maxSessionMemory: MAX_SESSION_MEMORY,
      createConnection: () => {
        socket = tlsConnect({
          ...TLS_OPTIONS,
          ...this.tls,
          host,
          port,
          ALPNProtocols: ['h2'],
          // Device certificates are self-signed; the key check on 'connect' below is what authenticates the peer.
          rejectUnauthorized: false,
        });
        socket.setNoDelay(true);
        const s = socket;
        this.live.set(
          s,
          new Promise((resolve) =>
            s.once('close', () => {
              this.live.delete(s);
              resolve();
            }),
          ),
        );
        return socket;
      },
    });
    link.session = session;
    if (socket !== undefined) this.sockets.set(session, socket);
    const note = (e: TunnelError) => {
      if (!this.causes.has(session)) this.causes.set(session, e);
    };
    const fail = (e: TunnelError) => {
      note(e);
      this.destroy(session);
    };

    link.ready = new Promise<ClientHttp2Session>((resolve, reject) => {
      const timer = setTimeout(() => fail(new TunnelError('UNAVAILABLE', `connecting to ${name} at ${address} timed out after ${this.connectTimeout} ms`)), this.connectTimeout);
      session.once('connect', () => {
        const cert = socket?.getPeerX509Certificate();
        let got: string;
        try {
          if (cert === undefined) throw new Error('it presented no certificate');
          got = x509PublicKeyB64(cert);
        } catch (e) {
          fail(new TunnelError('UNTRUSTED_PEER', `${name} at ${address} is not a device: ${(e as Error).message}`));
          return;
        }
        if (got !== key) {
          fail(new TunnelError('UNTRUSTED_PEER', `${name} at ${address} presented key ${got}, not the key ${key} expected for ${name}`));
          return;
        }
        session.setLocalWindowSize(CONNECTION_WINDOW);
        // TLS 1.3 lets the client finish its handshake before the server has looked at the client's certificate, so
        // the session is not known to be accepted until the server answers something: a refusing server sends GOAWAY
        // without reading a frame. One ping round trip settles it before any request is sent.
        session.ping((err) => {
          if (err || session.destroyed) return;
          clearTimeout(timer);
          link.failures = 0;
          keepAlive(session, this.opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS, (reason) => fail(new TunnelError('UNAVAILABLE', `${name} at ${address}: ${reason}`)));
          link.state = 'connected';
          this.opts.onConnect?.(name);
          resolve(session);
        });
      });
      session.on('goaway', (code: number, _last: number, data?: Buffer) => {
        if (code === constants.NGHTTP2_NO_ERROR) {
          // The peer is closing in good order (a restart, say): requests under way finish on this session, and the
          // next one opens a new session at once rather than failing on this one or waiting out a back-off.
          if (link.session === session) {
            link.session = undefined;
            link.ready = undefined;
            link.state = 'idle';
          }
          return;
        }
        const reason = data !== undefined && data.length > 0 ? data.toString('utf8') : `GOAWAY code ${code}`;
        note(new TunnelError(code === REFUSAL_CODE ? 'REFUSED' : 'UNAVAILABLE', `${name} at ${address} refused this device: ${reason}`));
      });
      session.on('error', (e: Error) => {
        note(new TunnelError('UNAVAILABLE', `tunnel to ${name} at ${address} failed: ${e.message}`));
      });
      session.once('close', () => {
        clearTimeout(timer);
        note(new TunnelError('UNAVAILABLE', `${name} at ${address} closed the tunnel`));
        const why = this.causes.get(session)!;
        reject(why);
        this.ended(link, session, why);
      });
    });
    // Nobody may be waiting on this attempt (a background retry); its failure is reported through the back-off.
    link.ready.catch(() => {});
  }

  private get connectTimeout(): number {
    return this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  /** The session of `link` ended: unless it was shut on purpose, back off and try again. */
  private ended(link: Link, session: ClientHttp2Session, cause: TunnelError): void {
    if (link.session !== session) return;
    link.session = undefined;
    link.ready = undefined;
    if (this.closed || this.links.get(link.peer.name) !== link) return;
    link.failures += 1;
    const delay = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** Math.min(link.failures - 1, 30));
    link.state = 'backoff';
    link.lastError = cause;
    link.retryAt = Date.now() + delay;
    link.retryTimer = setTimeout(() => {
      link.retryTimer = undefined;
      if (this.links.get(link.peer.name) === link) this.connect(link);
    }, delay);
    this.opts.onBackoff?.(link.peer.name, delay, cause);
  }

  /** Ends a link for good: no retry, its session closed, waiting requests failed with `cause`. */
  private shut(link: Link, cause: TunnelError): void {
    clearTimeout(link.retryTimer);
    link.retryTimer = undefined;
    link.state = 'idle';
    const session = link.session;
    link.session = undefined;
    link.ready = undefined;
    if (session !== undefined && !session.destroyed) {
      // Requests waiting for this session, or running on it, fail with `cause`.
      if (!this.causes.has(session)) this.causes.set(session, cause);
      this.destroy(session);
    }
  }

  private destroy(session: ClientHttp2Session): void {
    session.destroy();
    this.sockets.get(session)?.destroy();
  }

  // ---- requests ------------------------------------------------------------------------------------------------

  /**
   * The response body, ending only when the whole answer arrived. Node ends a stream's readable side cleanly also
   * when its session is torn down under it (the peer crashed or restarted, the link was declared dead), so a consumer
   * would take a cut-off body for the whole one: the end is checked against the stream's close (reset or not) and the
   * session's fate, and an incomplete body fails with an error instead (a body shorter than its content-length nghttp2
   * refuses itself). Destroying the body resets the stream, so a consumer that gives up cancels the answer at the peer.
   */
  private wholeBody(stream: ClientHttp2Stream, session: ClientHttp2Session, what: string): Readable {
    // Judged when the stream closes, not when the consumer is done with the body: a session that goes after the stream
    // was read to its end does not make an answer that arrived whole a cut-off one.
    let verdict: Error | null | undefined;
    const cutOff = (why: string) => new TunnelError('UNAVAILABLE', `${what}: the answer was cut off (${why})`);
    const judge = () => {
      const cause = this.causes.get(session);
      if (cause) verdict = cutOff(cause.message);
      else if (stream.rstCode !== constants.NGHTTP2_NO_ERROR) verdict = cutOff(`stream reset, code ${stream.rstCode}`);
      // Closed before its end was read: its session went (a peer restarting, drop()) while a slow reader had not
      // taken all of it, and Node drops what the stream still held.
      else if (!stream.readableEnded) verdict = cutOff('the session closed before the answer was read');
      else verdict = null;
      // What the stream still held is gone with it, and it will never end: the body fails now, not at a flush that
      // would never come.
      if (verdict) body.destroy(verdict);
    };
    const body = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        cb(null, chunk);
      },
      flush(cb) {
        if (verdict !== undefined) cb(verdict);
        else stream.once('close', () => cb(verdict));
      },
    });
    // A peer vanishing mid-body must not crash a process whose consumer forgot to listen for 'error'; consumers still
    // see it through pipeline() or async iteration, which track the body's own state.
    body.on('error', () => {});
    if (stream.closed) judge();
    else stream.once('close', judge);
    pipeline(stream, body, () => {});
    return body;
  }

  private send(link: Link, session: ClientHttp2Session, req: TunnelRequest): Promise<TunnelResponse> {
    const headers: OutgoingHttpHeaders = { ':method': req.method, ':path': req.path };
    for (const [k, v] of Object.entries(req.headers ?? {})) {
      const lower = k.toLowerCase();
      if (!CONNECTION_HEADERS.has(lower) && !lower.startsWith(':') && !(lower === 'te' && v !== 'trailers')) headers[lower] = v;
    }
    return new Promise<TunnelResponse>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: req.body === undefined, signal: req.signal });
      } catch (e) {
        reject(unsent(this.causes.get(session) ?? new TunnelError('UNAVAILABLE', `cannot send ${req.method} ${req.path} to ${link.peer.name}: ${(e as Error).message}`)));
        return;
      }
      // A stream can end without an 'error' (its session closed under it), so 'close' before a response fails too.
      const failed = (e?: Error) => {
        const cause = this.causes.get(session);
        const what = `${req.method} ${req.path} to ${link.peer.name}`;
        if (e?.name === 'AbortError') reject(e);
        else if (cause !== undefined) reject(cause);
        else if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM) {
          reject(new UnprocessedError(`${what} was refused unprocessed (the peer is closing the session); it is safe to retry`));
        } else reject(new TunnelError('UNAVAILABLE', `${what} failed: ${e?.message ?? `the stream closed before an answer (code ${stream.rstCode})`}`));
      };
      stream.once('error', failed);
      stream.once('close', failed);
      stream.once('response', (h) => {
        stream.off('error', failed);
        stream.off('close', failed);
        const out: Record<string, string | string[] | undefined> = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v;
        resolve({ status: Number(h[':status']), headers: out, body: this.wholeBody(stream, session, `${req.method} ${req.path} to ${link.peer.name}`) });
      });
      if (Buffer.isBuffer(req.body) && req.body.length <= WRITE_PIECE) stream.end(req.body);
      else if (req.body !== undefined) {
        // A large buffer goes through the same stage as a stream: written all at once, its pieces would reach HTTP/2
        // together and be joined into one large buffer again.
        const body = Buffer.isBuffer(req.body) ? Readable.from([req.body]) : req.body;
        pipeline(body, writePieces(), stream, () => {});
      }
    });
  }
}
