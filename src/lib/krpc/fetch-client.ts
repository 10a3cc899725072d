// The typed kRPC client for browsers: the same declarations and checks as the Node client (call.ts), carried by
// fetch to a gateway on the page's own origin. Tokens travel in the envelope (sys[1]), as on every other hop.
import { KrpcError } from './errors.ts';
import type { MethodMap, ServiceDef } from './service.ts';
import { type Client, type TokenSource, bindClient } from './call.ts';

export interface FetchClientOptions {
  /** Origin and path prefix of the gateway; empty for the page's own origin. */
  baseUrl?: string;
  token?: TokenSource;
  timeoutMs?: number;
}

/** 16 hex digits, the length of the server's own trace ids. crypto.getRandomValues works outside secure contexts
 * too (a LAN address over plain HTTP), unlike crypto.randomUUID. */
function newTrace(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function createFetchClient<M extends MethodMap>(def: ServiceDef<M>, opts: FetchClientOptions = {}): Client<M> {
  const base = (opts.baseUrl ?? '').replace(/\/$/, '');
  return bindClient(def, {
    token: opts.token,
    timeoutMs: opts.timeoutMs,
    trace: newTrace,
    where: `${base}/kapi/${def.name}`,
    send: async (path, body, timeoutMs) => {
      const url = `${base}${path}`;
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          credentials: 'omit',
          cache: 'no-store',
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        const err = e as Error;
        if (err.name === 'TimeoutError') throw new KrpcError('TIMEOUT', `${url} did not answer within ${timeoutMs} ms`);
        throw new KrpcError('UNAVAILABLE', `cannot reach ${url}: ${err.message}`);
      }
      try {
        return { status: res.status, json: await res.json() };
      } catch {
        throw new KrpcError('UNAVAILABLE', `${url} answered HTTP ${res.status} with a non-JSON body`);
      }
    },
  });
}
