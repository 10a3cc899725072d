// The node gateway's side of the device tunnels (DESIGN §8, docs/tunnel.md): requests for a service whose instance
// runs on another device go through the tunnel to that device's gateway, which hands them to its local instance.
// A device without a certificate (one joining the zone) may reach verify-hub's device_enrol, and nothing else.
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { CLIENT_HEADER, sendJson } from '../../lib/krpc/index.ts';
import { type TunnelClient, type TunnelPeer, TunnelError } from '../../lib/tunnel/index.ts';

/** Headers of one HTTP/1 hop, which must not be forwarded (and which HTTP/2 forbids outright). */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host', 'te', 'trailer']);

function forwardable(headers: IncomingMessage['headers'] | Http2ServerRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k.startsWith(':') || HOP_HEADERS.has(k)) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | number | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !k.startsWith(':') && !HOP_HEADERS.has(k)) out[k] = v;
  return out;
}

/**
 * Sends a local client's request to the instance on `peer` through the tunnel; `body` when already read. When the
 * request never reached the peer (no session to it: the device is down or cut off) and its body can still be sent,
 * `elsewhere` is asked to send it to another instance; it returns false when there is none, and the failure is
 * answered here.
 */
export function proxyThroughTunnel(
  tunnel: TunnelClient,
  peer: TunnelPeer,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  body?: Buffer,
  elsewhere?: () => boolean,
): void {
  const abort = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  // The caller is the peer the gateway sees, as for a local instance (proxy): every local process reaches the
  // gateway over loopback, apps included, so a forwarded-for header it sent would let it speak for any address (and
  // dodge the per-address login limits on the other device). The UI listener hands its LAN callers' own sockets in.
  const client = req.socket.remoteAddress ?? '';
  const host = req.headers['x-forwarded-host'] ?? req.headers.host;
  const headers = { ...forwardable(req.headers), [CLIENT_HEADER]: client, ...(typeof host === 'string' ? { 'x-forwarded-host': host } : {}) };
  tunnel.request(peer, { method: req.method ?? 'POST', path, headers, body: body ?? req, signal: abort.signal }).then(
    (up) => {
      res.writeHead(up.status, responseHeaders(up.headers));
      up.body.on('error', () => res.destroy());
      up.body.pipe(res);
    },
    (err: unknown) => {
      // A streamed body is still whole when nothing of it was read: the tunnel reads it only once a stream is open.
      const canResend = body !== undefined || !req.readableDidRead;
      if (err instanceof TunnelError && err.unsent && canResend && !abort.signal.aborted && elsewhere?.()) return;
      req.resume();
      const why = err instanceof TunnelError ? `${err.code}: ${err.message}` : (err as Error).message;
      if (!res.headersSent) sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `device ${peer.name} is unreachable through its tunnel (${why})` } });
      else res.destroy();
    },
  );
}

/** Hands a request that arrived through the tunnel to this node's instance on `port`. */
export function proxyFromTunnel(req: Http2ServerRequest, res: Http2ServerResponse, port: number, client: string, body?: Buffer): void {
  let received = body !== undefined || req.readableEnded;
  let answered = false;
  const upstream = httpRequest(
    {
      host: '127.0.0.1',
      port,
      method: req.method,
      path: req.url,
      headers: { ...forwardable(req.headers), host: `127.0.0.1:${port}`, 'x-forwarded-for': client, ...(body ? { 'content-length': String(body.length) } : {}) },
    },
    (up) => {
      res.writeHead(up.statusCode ?? 502, responseHeaders(up.headers));
      up.once('end', () => (answered = true));
      up.pipe(res);
    },
  );
  upstream.on('error', (e) => {
    answered = true;
    if (!res.headersSent) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNAVAILABLE', message: `service instance unreachable: ${e.message}` } }));
    } else res.destroy();
  });
  // A stream that closes before its request body came whole or the instance's answer went out whole (the peer reset
  // it: a cancelled download, an aborted upload; or the session went: the device removed, the link dead) ends the
  // instance's request at once. The compatibility layer would not say so: its response emits 'finish' whatever
  // happened, and its request ends its body as if whole (after the close), which piped on would hand the instance a
  // cut-off upload as complete.
  if (!received) req.once('end', () => (received = true));
  res.stream.once('close', () => {
    if (!received || !answered) upstream.destroy();
  });
  if (body) upstream.end(body);
  else req.pipe(upstream);
}

/** The largest request an anonymous (joining) device may send: an enrolment call is a few hundred bytes. */
const ANONYMOUS_MAX_BODY = 64 * 1024;

/**
 * An anonymous request: only `POST /kapi/verify-hub` calling `device_enrol` passes, read whole and checked here, so a
 * device without a certificate can reach nothing else in the zone.
 */
export function handleAnonymous(req: Http2ServerRequest, res: Http2ServerResponse, verifyHubPort: number | undefined): void {
  const refuse = (status: number, message: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: status === 503 ? 'UNAVAILABLE' : 'PERMISSION_DENIED', message } }));
  };
  if (req.method !== 'POST' || req.url !== '/kapi/verify-hub') return refuse(403, 'a device without a zone certificate may only call verify-hub.device_enrol');
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > ANONYMOUS_MAX_BODY) {
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    let method: unknown;
    try {
      method = (JSON.parse(body.toString('utf8')) as { method?: unknown }).method;
    } catch {
      method = undefined;
    }
    if (method !== 'device_enrol') return refuse(403, 'a device without a zone certificate may only call verify-hub.device_enrol');
    if (verifyHubPort === undefined) return refuse(503, 'verify-hub does not run on this device; use another core device of the offer');
    proxyFromTunnel(req, res, verifyHubPort, req.socket.remoteAddress ?? '', body);
  });
}
