// Typed kRPC client derived from a service declaration: `client.get({ key })` is typed by the same zod schemas the
// server validates with. Params are checked before sending so a caller's mistake names the field at once.
import { request as httpRequest, get as httpGet } from 'node:http';
import { keepAliveAgent } from './agent.ts';
import { KrpcError } from './errors.ts';
import { currentTrace, newTraceId } from './context.ts';
import type { MethodMap, ServiceDef } from './service.ts';
import { type Client, type KrpcTransport, type TokenSource, bindClient } from './call.ts';

export type { Client, KrpcTransport, TokenSource } from './call.ts';

export interface ClientOptions {
  /** Base URL of a node gateway or the service itself, e.g. `http://127.0.0.1:3180`. */
  baseUrl: string;
  token?: TokenSource;
  timeoutMs?: number;
  /** Explicit trace id; otherwise the caller's current trace (inside a handler) or a new one. */
  trace?: string;
  /** How a request travels, when not plain HTTP to baseUrl (a device tunnel, for one): POSTs the JSON body to the
   * path and answers the parsed JSON. */
  transport?: KrpcTransport;
  /** Through a node gateway: reach this device's instance of the service, or fail (NODE_HEADER). */
  node?: string;
}

/** A request to a node gateway carrying this header goes to the named device's instance of the service, or fails;
 * without it the gateway picks an instance. For work bound to one device: its disks, its leases. */
export const NODE_HEADER = 'x-buckyos-node';

/** Carries the address of the original caller from one gateway to the next: the receiving gateway trusts it only
 * from an authenticated zone device. */
export const CLIENT_HEADER = 'x-buckyos-client';

/** Headers only a gateway may set: from a client on the LAN they would pick a device's instance, name another
 * address or another host. Every listener open to the LAN drops them from what it receives. */
export const GATEWAY_ONLY_HEADERS: readonly string[] = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-prefix', 'forwarded', NODE_HEADER, CLIENT_HEADER];

const agent = keepAliveAgent({ maxSockets: 64 });

export async function callRaw(
  url: string,
  body: unknown,
  timeoutMs: number,
  extraHeaders: Record<string, string> = {},
): Promise<{ status: number; json: unknown }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        agent,
        headers: { ...extraHeaders, 'content-type': 'application/json', 'content-length': payload.length },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            reject(new KrpcError('UNAVAILABLE', `${url} answered HTTP ${res.statusCode} with a non-JSON body`));
          }
        });
        res.on('error', (e) => reject(new KrpcError('UNAVAILABLE', `${url}: ${e.message}`)));
      },
    );
    req.on('timeout', () => req.destroy(new KrpcError('TIMEOUT', `${url} did not answer within ${timeoutMs} ms`)));
    req.on('error', (e) =>
      reject(e instanceof KrpcError ? e : new KrpcError('UNAVAILABLE', `cannot reach ${url}: ${(e as Error).message}`)),
    );
    req.end(payload);
  });
}

/** True when `GET url` answers 200 within `timeoutMs`. Plain node:http rather than fetch: long-running supervisors
 * poll this constantly, and fetch's undici stack would add megabytes to every process that does. */
export function httpHealthy(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpGet(url, { agent, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export function createClient<M extends MethodMap>(def: ServiceDef<M>, opts: ClientOptions): Client<M> {
  const url = `${opts.baseUrl.replace(/\/$/, '')}/kapi/${def.name}`;
  const headers: Record<string, string> = opts.node ? { [NODE_HEADER]: opts.node } : {};
  return bindClient(def, {
    send: opts.transport ?? ((_path, body, timeoutMs) => callRaw(url, body, timeoutMs, headers)),
    token: opts.token,
    timeoutMs: opts.timeoutMs,
    trace: () => opts.trace ?? currentTrace() ?? newTraceId(),
    where: url,
  });
}
