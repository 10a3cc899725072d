// The typed client's core, shared by the Node client (client.ts: node:http, traces from the caller's context) and
// the browser client (fetch-client.ts: fetch). Free of Node built-ins for that reason: how a request travels and
// where its trace id comes from are given to it.
import { KrpcError, isErrorCode } from './errors.ts';
import type { MethodMap, ParamsIn, Result, ServiceDef } from './service.ts';
import { formatIssues } from './validate.ts';

export type TokenSource = string | null | (() => string | null | Promise<string | null>);

/** POSTs the JSON body to the path and answers the parsed JSON. */
export type KrpcTransport = (path: string, body: unknown, timeoutMs: number) => Promise<{ status: number; json: unknown }>;

export type Client<M extends MethodMap> = {
  [K in keyof M]: (params: ParamsIn<M[K]>, opts?: { timeoutMs?: number }) => Promise<Result<M[K]>>;
};

export interface BindOptions {
  send: KrpcTransport;
  token?: TokenSource;
  timeoutMs?: number;
  trace: () => string;
  /** Names the server in errors about its answers. */
  where: string;
}

let seqCounter = 0;

export function bindClient<M extends MethodMap>(def: ServiceDef<M>, opts: BindOptions): Client<M> {
  const path = `/kapi/${def.name}`;
  const client = {} as Record<string, unknown>;
  for (const [name, m] of Object.entries(def.methods)) {
    client[name] = async (params: unknown, callOpts?: { timeoutMs?: number }) => {
      const checked = m.params.safeParse(params ?? {});
      if (!checked.success) {
        const f = formatIssues(checked.error, 'params');
        throw new KrpcError('INVALID_PARAMS', `${def.name}.${name}: ${f.message}`, { issues: f.issues });
      }
      const token = typeof opts.token === 'function' ? await opts.token() : (opts.token ?? null);
      const seq = (seqCounter = (seqCounter + 1) % 2 ** 31);
      // Send the caller's params, not the parsed ones, so server-side defaults stay the server's decision.
      const { json } = await opts.send(path, { method: name, params: params ?? {}, sys: [seq, token, opts.trace()] }, callOpts?.timeoutMs ?? opts.timeoutMs ?? 30_000);
      const resp = json as { result?: unknown; error?: { code?: unknown; message?: unknown; data?: unknown } };
      if (resp && typeof resp === 'object' && resp.error) {
        const code = isErrorCode(resp.error.code) ? resp.error.code : 'INTERNAL';
        throw new KrpcError(code, String(resp.error.message ?? 'unknown error'), resp.error.data);
      }
      if (!resp || typeof resp !== 'object' || !('result' in resp)) {
        throw new KrpcError('UNAVAILABLE', `${opts.where} answered without result or error`);
      }
      return resp.result;
    };
  }
  return client as Client<M>;
}
