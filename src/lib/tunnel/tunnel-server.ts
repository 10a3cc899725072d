// The accepting end of device-to-device tunnels (DESIGN §8): TLS 1.3 + HTTP/2 where each side's certificate carries its
// Ed25519 device key. Peers are admitted by key (authorizePeer), not by a CA chain, so a device removed from the zone
// is refused at its next handshake, and revalidate() cuts its open sessions at once.
import { createSecureServer, constants, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type KeyPair, privateKeyToPem } from '../identity/keys.ts';
import { certPublicKeyB64, x509PublicKeyB64 } from '../identity/tls-certs.ts';
import {
  CONNECTION_WINDOW, DEFAULT_PING_INTERVAL_MS, H2_SETTINGS, MAX_SESSION_MEMORY, REFUSAL_CODE, SERVER_HONORS_CIPHER_ORDER, TLS_OPTIONS,
  keepAlive,
} from './common.ts';

export interface TunnelServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** This device's key, and a certificate for it (e.g. selfSignedCert). */
  key: KeyPair;
  certPem: string;
  /** Device name for a trusted peer key, or null to refuse. Called at handshake and again by revalidate(). */
  authorizePeer(publicKeyB64: string): string | null;
  /** Allow clients without a certificate (used only for device enrolment); their requests get peer = null. */
  allowAnonymous?: boolean;
  /** Bounds on anonymous clients (defaults: ANONYMOUS_LIMITS). */
  anonymousLimits?: Partial<AnonymousLimits>;
  handler(req: Http2ServerRequest, res: Http2ServerResponse, peer: string | null): void;
  /** How often idle clients are pinged; a client that misses one is dropped. */
  pingIntervalMs?: number;
  /** Refused peers, dead sessions and failed handshakes, for the log. Messages name public keys, never private ones. */
  onError?(err: Error): void;
}

export interface TunnelServer {
  readonly port: number;
  /** Stops accepting, asks every session to finish (GOAWAY) and cuts what is still open after CLOSE_GRACE_MS. */
  close(): Promise<void>;
  /** Re-checks every open session, closing those whose peer is no longer authorised (device removed). */
  revalidate(): void;
}

/**
 * Anyone who can reach the port may open an anonymous session, so what such sessions may hold is bounded: a device
 * joining makes one enrolment call and goes. Without these, a client that opened streams and never ended their
 * bodies could hold the gateway's memory (its port faces the internet on a public gateway).
 */
export interface AnonymousLimits {
  /** Anonymous sessions open at once, from everywhere. */
  maxSessions: number;
  /** Anonymous sessions open at once from one address. */
  maxPerAddress: number;
  /** Streams one anonymous session may have open at once (told to the client in SETTINGS). */
  maxStreams: number;
  /** An anonymous session is closed this long after it opened, finished or not. */
  lifetimeMs: number;
}

export const ANONYMOUS_LIMITS: AnonymousLimits = { maxSessions: 16, maxPerAddress: 2, maxStreams: 2, lifetimeMs: 60_000 };

/** How long close() lets in-flight requests finish before it cuts them. */
export const CLOSE_GRACE_MS = 2000;

interface Admitted {
  /** null for an anonymous (enrolment) client. */
  key: string | null;
  name: string | null;
}

export async function startTunnelServer(opts: TunnelServerOptions): Promise<TunnelServer> {
  let certKey: string;
  try {
    certKey = certPublicKeyB64(opts.certPem);
  } catch (e) {
    throw new Error(`tunnel server certPem is unusable: ${(e as Error).message}`);
  }
  if (certKey !== opts.key.publicKeyB64) {
    throw new Error(`tunnel server certPem is for key ${certKey}, not this device's key ${opts.key.publicKeyB64}`);
  }
  const onError = opts.onError ?? (() => {});
  const admitted = new Map<ServerHttp2Session, Admitted>();
  const limits = { ...ANONYMOUS_LIMITS, ...opts.anonymousLimits };
  const anonymousFrom = (address: string | undefined) =>
    [...admitted].filter(([s, p]) => p.key === null && (address === undefined || s.socket?.remoteAddress === address)).length;

  const admit = (socket: TLSSocket): Admitted | string => {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) {
      if (!opts.allowAnonymous) return 'this tunnel accepts only devices of the zone, and the client presented no device certificate';
      if (anonymousFrom(undefined) >= limits.maxSessions) return `too many clients without a certificate (${limits.maxSessions}); try again later`;
      if (anonymousFrom(socket.remoteAddress) >= limits.maxPerAddress) {
        return `too many clients without a certificate from ${socket.remoteAddress} (${limits.maxPerAddress}); try again later`;
      }
      return { key: null, name: null };
    }
    let key: string;
    try {
      key = x509PublicKeyB64(cert);
    } catch (e) {
      return `the client certificate is not a device certificate: ${(e as Error).message}`;
    }
    let name: string | null;
    try {
      name = opts.authorizePeer(key);
    } catch (e) {
      onError(new Error(`authorizePeer failed for device key ${key}: ${(e as Error).message}`));
      return `device key ${key} could not be checked; try again`;
    }
    return name === null ? `device key ${key} is not authorised in this zone` : { key, name };
  };

  const refuse = (session: ServerHttp2Session, reason: string) => {
    admitted.delete(session);
    onError(new Error(`tunnel refused ${remote(session)}: ${reason}`));
    // The reason travels in the GOAWAY's debug data so the client can say why it was refused. Destroying (rather than
    // closing) also cuts streams already running, which is what revoking a device must do.
    session.goaway(REFUSAL_CODE, 0, Buffer.from(reason));
    session.destroy();
  };

  const server = createSecureServer({
    ...TLS_OPTIONS,
    honorCipherOrder: SERVER_HONORS_CIPHER_ORDER,
    key: privateKeyToPem(opts.key.privateKey),
    cert: opts.certPem,
    // Every client is asked for a certificate, and none is refused by the TLS layer: self-signed device certificates
    // fail any chain check, and the key check below is the one that counts. The TLS handshake itself still proves the
    // client holds the private key of the certificate it sent.
    requestCert: true,
    rejectUnauthorized: false,
    settings: H2_SETTINGS,
    maxSessionMemory: MAX_SESSION_MEMORY,
    noDelay: true,
  });

  // 'session' is emitted as soon as the TLS handshake completes, before a single HTTP/2 frame from the client has been
  // read, so a refused client never reaches a request.
  server.on('session', (session: ServerHttp2Session) => {
    const verdict = admit(session.socket as TLSSocket);
    if (typeof verdict === 'string') {
      refuse(session, verdict);
      return;
    }
    admitted.set(session, verdict);
    session.once('close', () => admitted.delete(session));
    if (verdict.key === null) {
      session.settings({ maxConcurrentStreams: limits.maxStreams });
      const expire = setTimeout(() => {
        // A session its client just dropped is destroyed a moment before it emits 'close'.
        if (!session.destroyed) refuse(session, `a session without a certificate lasts at most ${limits.lifetimeMs} ms`);
      }, limits.lifetimeMs);
      expire.unref();
      session.once('close', () => clearTimeout(expire));
    }
    session.on('error', (e) => onError(new Error(`tunnel session with ${describe(verdict)} failed: ${e.message}`)));
    session.setLocalWindowSize(CONNECTION_WINDOW);
    keepAlive(session, opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS, (reason) => {
      onError(new Error(`tunnel session with ${describe(verdict)} dropped: ${reason}`));
      session.destroy();
    });
  });

  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const peer = admitted.get(req.stream.session as ServerHttp2Session);
    // Only admitted sessions are in the map; this is the one place a request is handed on, so nothing else is served.
    if (peer === undefined) {
      req.stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    opts.handler(req, res, peer.name);
  });

  server.on('tlsClientError', (e: Error) => onError(new Error(`tunnel TLS handshake failed: ${e.message}`)));

  // The server's own 'close' comes when its connection count reaches zero, a moment before the last socket has let go
  // of its handle; close() waits for the TLS sockets themselves, so nothing of the server outlives it. Raw connections
  // are kept too, so that close() can also cut one stuck before the end of its TLS handshake.
  const sockets = new Set<TLSSocket>();
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    const failed = (e: Error) => reject(new Error(`tunnel server cannot listen on ${opts.host}:${opts.port}: ${e.message}`));
    server.once('error', failed);
    server.listen(opts.port, opts.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  server.on('error', (e) => onError(new Error(`tunnel server error: ${e.message}`)));
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | null = null;
  return {
    port,
    close() {
      closing ??= (async () => {
        const stopped = once(server, 'close');
        server.close();
        const gone = [...sockets].map((s) => once(s, 'close'));
        for (const session of admitted.keys()) session.close();
        const cut = setTimeout(() => {
          for (const session of admitted.keys()) session.destroy();
          for (const socket of connections) socket.destroy();
        }, CLOSE_GRACE_MS);
        await Promise.all([stopped, ...gone]);
        clearTimeout(cut);
      })();
      return closing;
    },
    revalidate() {
      for (const [session, peer] of admitted) {
        if (peer.key === null) continue;
        let name: string | null;
        try {
          name = opts.authorizePeer(peer.key);
        } catch (e) {
          // Failing open would keep a removed device connected; failing closed costs a reconnect.
          onError(new Error(`authorizePeer failed for device key ${peer.key}: ${(e as Error).message}`));
          name = null;
        }
        if (name === null) refuse(session, `device key ${peer.key} (${peer.name}) is no longer authorised in this zone`);
        // A renamed device keeps its session; its later requests carry the new name.
        else peer.name = name;
      }
    },
  };
}

function describe(peer: Admitted): string {
  return peer.name === null ? 'an anonymous client' : `device ${peer.name}`;
}

function remote(session: ServerHttp2Session): string {
  const socket = session.socket;
  return socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
}
