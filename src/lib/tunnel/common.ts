// What both ends of a device-to-device tunnel share: the error type, the HTTP/2 and TLS settings, peer addresses and
// the keep-alive. The protocol is described in docs/tunnel.md.
import { readFileSync } from 'node:fs';
import { constants, type Http2Session, type Settings } from 'node:http2';
import { isIP } from 'node:net';

export type TunnelErrorCode =
  /** The peer presented a key other than the one expected for that device. */
  | 'UNTRUSTED_PEER'
  /** The peer does not accept this device: its key is not authorised there (or no longer is), or it sent none. */
  | 'REFUSED'
  /** The peer cannot be reached, or the session to it broke. */
  | 'UNAVAILABLE'
  /** The peer's address or key is malformed. */
  | 'INVALID_PEER'
  /** The client was closed, or the session dropped, while the request waited. */
  | 'CLOSED';

export class TunnelError extends Error {
  constructor(
    readonly code: TunnelErrorCode,
    message: string,
    /** While the client backs off after a failure: when (Date.now() ms) it next tries to connect. */
    readonly retryAt?: number,
    /**
     * Nothing of the request reached the peer's application: there was no session to send it on, or the peer refused
     * its stream unprocessed. Another instance of the service may take it, if its body can still be sent.
     */
    readonly unsent = false,
  ) {
    super(message);
    this.name = 'TunnelError';
  }
}

// Flow-control windows. HTTP/2's default (64 KiB) holds one stream to 64 KiB per round trip: about 50 MB/s at a 1 ms
// LAN round trip, and a quarter of what the tunnel moves between two namespaces on one machine (docs/tunnel.md). 8 MiB
// per stream fills 1 Gbit/s at 60 ms, and the connection window lets four such streams run at once. A window costs
// memory only while the reading application falls behind: data is acknowledged as it is consumed.
export const STREAM_WINDOW = 8 * 1024 * 1024;
export const CONNECTION_WINDOW = 32 * 1024 * 1024;

/** The largest piece the client writes into a stream at once; larger chunks of a request body are cut into views of
 * this size (nothing is copied). Node hands each write's HTTP/2 frames to TLS as one freshly allocated buffer it joins
 * them into: for a 1 MiB write that is new memory every time, and 1 GiB written in 1 MiB chunks cost both ends about a
 * third more CPU than in 64 KiB pieces (docs/tunnel.md §8); 128 KiB measured the same as 64, 16-32 KiB worse. */
export const WRITE_PIECE = 64 * 1024;

export const H2_SETTINGS: Settings = {
  initialWindowSize: STREAM_WINDOW,
  // The node gateway multiplexes every remote kRPC call and transfer to a device onto one session.
  maxConcurrentStreams: 1000,
  enablePush: false,
};

/** Megabytes Node lets one session hold (default 10) before it refuses new streams: full windows in both directions
 * must fit, or a large transfer would make the small calls beside it fail. */
export const MAX_SESSION_MEMORY = 2 * (CONNECTION_WINDOW / (1024 * 1024)) + 16;

/** Whether this CPU encrypts AES in hardware (x86 `aes` flag, ARMv8 `aes` feature). Without it (a Raspberry Pi 4, for
 * one) ChaCha20-Poly1305 is several times faster. Other systems than Linux are assumed to have it. */
function cpuHasAes(): boolean {
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return true;
  }
  return /^(flags|Features)\s*:.*\baes\b/m.test(info);
}

const HAS_AES = cpuHasAes();
// AES-128 before AES-256: Ed25519 keys give about 128-bit security, so AES-256 would add cost (about 15% per byte)
// and no strength.
const CIPHERS = (HAS_AES
  ? ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384']
  : ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']
).join(':');

/** TLS for both ends: 1.3 only. Certificates are checked by key in code (see docs/tunnel.md), not by a CA chain. */
export const TLS_OPTIONS = { minVersion: 'TLSv1.3', ciphers: CIPHERS } as const;

/** The server normally follows the client's cipher order; a server without AES hardware imposes its own, so ChaCha20
 * is used whenever either end lacks it. */
export const SERVER_HONORS_CIPHER_ORDER = !HAS_AES;

/** A PING every this often; one left unanswered when the next is due marks the session dead, so a dead link is
 * noticed within two intervals. */
export const DEFAULT_PING_INTERVAL_MS = 5000;

/** GOAWAY code of a refusal: "the peer does not meet the security this end requires", with the reason as debug data. */
export const REFUSAL_CODE = constants.NGHTTP2_INADEQUATE_SECURITY;

/** Splits `host:port` (IPv6 as `[addr]:port`); throws TunnelError INVALID_PEER naming the address on anything else. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  const host = m?.[1] ?? m?.[2];
  if (host === undefined || !(port >= 1 && port <= 65535) || (m?.[1] !== undefined && isIP(host) !== 6)) {
    throw new TunnelError('INVALID_PEER', `peer address ${JSON.stringify(address)} is not host:port (an IPv6 address as [addr]:port)`);
  }
  return { host, port };
}

/** What one PING costs on the wire, TLS record included: written bytes up to this are not progress. */
const PING_WIRE_BYTES = 64;

/**
 * Pings `session` every `intervalMs` and calls `onDead` once if a ping is still unanswered when the next one is due and
 * the link made no progress meanwhile. On a slow link the answer queues behind up to a window of data (8 MiB take a
 * 1 MB/s uplink 8 s), and a receiver sends window updates only now and then, so bytes still moving either way count
 * as proof of life as good as the answer: a dead link stops both once the flow-control windows are spent. It pings
 * busy sessions too: one small frame per interval costs nothing. Stops by itself when the session closes.
 */
export function keepAlive(session: Http2Session, intervalMs: number, onDead: (reason: string) => void): void {
  let waiting = false;
  const socket = () => session.socket as { bytesRead?: number; bytesWritten?: number } | undefined;
  const moved = () => (socket()?.bytesRead ?? 0) + (socket()?.bytesWritten ?? 0);
  let seen = moved();
  let pinged = false;
  const timer = setInterval(() => {
    if (session.destroyed) return;
    const now = moved();
    // A PING frame is 17 bytes; under TLS it takes a record of its own, about 40.
    const progress = now - seen > (pinged ? PING_WIRE_BYTES : 0);
    seen = now;
    pinged = false;
    if (waiting) {
      if (progress) return;
      clearInterval(timer);
      onDead(`no answer to a keep-alive ping within ${intervalMs} ms`);
      return;
    }
    waiting = true;
    // The ping itself is no progress: it is written after this returns, so the next look allows for its frame.
    pinged = true;
    session.ping((err) => {
      if (!err) waiting = false;
    });
  }, intervalMs);
  // The session's socket is what keeps a process alive; its keep-alive timer must not.
  timer.unref();
  session.once('close', () => clearInterval(timer));
}
