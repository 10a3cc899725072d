// The HTTP server every service runs: its kRPC endpoints at `/kapi/<service>`, `GET /health`, and any plain HTTP
// routes the service adds (activation's `GET /device`, the gateway's proxying).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { KrpcError } from './errors.ts';
import { type KrpcEndpoint, sendJson } from './server.ts';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

export interface HttpAppOptions {
  name: string;
  endpoints?: KrpcEndpoint[];
  /** Exact `METHOD /path` routes, e.g. `'GET /device'`. */
  routes?: Record<string, RouteHandler>;
  /** Called for any request no route matched; defaults to a 404. */
  fallback?: RouteHandler;
  /** Extra health details; throwing marks the service unhealthy (503). */
  health?: () => Promise<Record<string, unknown>> | Record<string, unknown>;
}

export interface RunningServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export function createHttpApp(opts: HttpAppOptions): Server {
  const byPath = new Map((opts.endpoints ?? []).map((e) => [`/kapi/${e.service.name}`, e]));
  const server = createServer(async (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://local');
    } catch {
      sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'malformed request URL' } });
      return;
    }
    try {
      const ep = byPath.get(url.pathname);
      if (ep) return await ep.handle(req, res);
      // Also under the service's own prefix, so a health check through the node gateway reaches it.
      if (req.method === 'GET' && (url.pathname === '/health' || url.pathname === `/kapi/${opts.name}/health`)) {
        try {
          const details = opts.health ? await opts.health() : {};
          return sendJson(res, 200, { ok: true, service: opts.name, pid: process.pid, ...details });
        } catch (err) {
          return sendJson(res, 503, { ok: false, service: opts.name, reason: (err as Error).message });
        }
      }
      const route = opts.routes?.[`${req.method} ${url.pathname}`];
      if (route) return await route(req, res, url);
      if (opts.fallback) return await opts.fallback(req, res, url);
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${url.pathname}` } });
    } catch (err) {
      const e = err instanceof KrpcError ? err : new KrpcError('INTERNAL', 'internal error');
      if (!res.headersSent) sendJson(res, e.httpStatus, { error: e.toJSON() });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 35_000;
  server.requestTimeout = 120_000;
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<RunningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A failed bind of a listener that is not worth stopping its service for is retried this often. */
export const REBIND_MS = 10_000;

/**
 * Binds `server` in the background, and keeps trying every `rebindMs` while the bind fails (the port taken, the
 * address not yet configured: often transient), logging each new reason once. For a service's second listener (the
 * system UI, dfs's LAN listener), whose absence must not stop the service.
 */
export function listenRetrying(
  server: Server,
  opts: { host: string; port: number; what: string; log: Pick<Logger, 'info' | 'error'>; rebindMs?: number },
): { listening: Promise<void>; close(): Promise<void> } {
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let lastError = '';
  const listening = new Promise<void>((resolve) => {
    const attempt = () => {
      if (closed) return;
      server.listen(opts.port, opts.host);
    };
    server.on('listening', () => {
      // Closed while the bind was under way: let go of the port at once.
      if (closed) return void server.close();
      opts.log.info({ host: opts.host, port: (server.address() as AddressInfo).port }, `${opts.what} listening`);
      resolve();
    });
    server.on('error', (err: NodeJS.ErrnoException) => {
      if (server.listening) return;
      const why = `${err.code ?? ''} ${err.message}`;
      const every = opts.rebindMs ?? REBIND_MS;
      if (why !== lastError) opts.log.error({ host: opts.host, port: opts.port, err: err.message }, `${opts.what} cannot listen; retrying every ${every / 1000} s`);
      lastError = why;
      retry = setTimeout(attempt, every);
    });
    attempt();
  });
  return {
    listening,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        clearTimeout(retry);
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
