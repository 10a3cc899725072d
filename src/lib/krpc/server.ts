// kRPC server: `POST /kapi/<service>` with `{method, params, sys: [seq, token?, trace?]}`, answered
// `{result, sys: [seq, trace]}` or `{error: {code, message, data?}, sys: [seq, trace]}` (DESIGN §4).
// Every request is size-limited, parsed, envelope-checked, authenticated when the method needs it, and its params
// validated against the method's declared schema before any handler code runs.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Logger } from 'pino';
import { KrpcError } from './errors.ts';
import { type CallContext, type Principal, newTraceId, runWithTrace } from './context.ts';
import type { MethodMap, ParamsOut, Result, ServiceDef } from './service.ts';
import { MAX_REQUEST_DEPTH, formatIssues, jsonDepthWithin } from './validate.ts';

export { MAX_REQUEST_DEPTH, formatIssues, jsonDepthWithin } from './validate.ts';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export type Handlers<M extends MethodMap> = {
  [K in keyof M]: (params: ParamsOut<M[K]>, ctx: CallContext) => Promise<Result<M[K]>> | Result<M[K]>;
};

export interface KrpcServerOptions {
  /** Verifies a token and says who it belongs to; throws KrpcError('UNAUTHENTICATED' | 'TOKEN_EXPIRED') otherwise. */
  authenticate?: (token: string) => Promise<Principal> | Principal;
  maxBodyBytes?: number;
  logger?: Logger;
  /** Maps errors from lower layers (a store, a library) to KrpcError; return undefined to treat as internal. */
  mapError?: (err: unknown) => KrpcError | undefined;
}

const TRACE = /^[A-Za-z0-9_-]{1,64}$/;

const envelopeSchema = z.object({
  method: z.string().min(1).max(128),
  params: z.unknown().optional(),
  sys: z.array(z.unknown()).max(8).optional(),
});
/** sys = [seq?, token?, trace?], each slot validated on its own (a tuple schema would demand all three). */
const sysSlots = [
  z.number().int().nonnegative().safe().optional(),
  z.string().max(8192).nullable().optional(),
  z.string().regex(TRACE, 'trace id: 1-64 letters, digits, - or _').nullable().optional(),
] as const;

function parseSys(sys: unknown[] | undefined): [number | undefined, string | undefined, string | undefined] {
  const out: unknown[] = [];
  sysSlots.forEach((schema, i) => {
    const r = schema.safeParse(sys?.[i]);
    if (!r.success) throw new KrpcError('BAD_REQUEST', `malformed kRPC envelope: sys.${i}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    out.push(r.data ?? undefined);
  });
  return out as [number | undefined, string | undefined, string | undefined];
}

/** Reads a request body up to `limit` bytes; rejects with PAYLOAD_TOO_LARGE past it without buffering the rest. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new KrpcError('PAYLOAD_TOO_LARGE', `request body of ${declared} bytes exceeds the limit of ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(new KrpcError('PAYLOAD_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      if (!failed) {
        failed = true;
        reject(new KrpcError('BAD_REQUEST', `could not read request body: ${e.message}`));
      }
    });
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/** The caller's address. Only a loopback peer (this node's own gateway) may speak for another client through
 * X-Forwarded-For; from anywhere else the header is ignored, so it cannot be used to dodge per-address limits. */
export function clientAddress(req: IncomingMessage): string {
  const peer = req.socket.remoteAddress ?? '';
  const fwd = req.headers['x-forwarded-for'];
  if (LOOPBACK.has(peer) && typeof fwd === 'string') {
    const first = fwd.split(',')[0]?.trim();
    if (first && first.length <= 64) return first;
  }
  return peer;
}

export function bearerToken(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (typeof h === 'string' && h.startsWith('Bearer ')) return h.slice(7).trim() || null;
  return null;
}

export interface KrpcEndpoint {
  service: ServiceDef;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createKrpcEndpoint<M extends MethodMap>(
  def: ServiceDef<M>,
  handlers: Handlers<M>,
  opts: KrpcServerOptions = {},
): KrpcEndpoint {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = opts.logger;

  function toKrpcError(err: unknown, trace: string): KrpcError {
    if (err instanceof KrpcError) return err;
    const mapped = opts.mapError?.(err);
    if (mapped) return mapped;
    log?.error({ err, trace, service: def.name }, 'internal error in kRPC handler');
    return new KrpcError('INTERNAL', `internal error (trace ${trace})`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let seq = 0;
    let trace = newTraceId();
    let methodName = '';
    const started = process.hrtime.bigint();
    try {
      if (req.method !== 'POST') {
        throw new KrpcError('BAD_REQUEST', `kRPC requires POST, got ${req.method}`);
      }
      const body = await readBody(req, limit);
      let raw: unknown;
      try {
        raw = JSON.parse(body.toString('utf8'));
      } catch {
        throw new KrpcError('BAD_REQUEST', 'request body is not valid JSON');
      }
      if (!jsonDepthWithin(raw, MAX_REQUEST_DEPTH)) {
        throw new KrpcError('BAD_REQUEST', `request nests objects and arrays deeper than ${MAX_REQUEST_DEPTH} levels`);
      }
      const env = envelopeSchema.safeParse(raw);
      if (!env.success) {
        const f = formatIssues(env.error, '');
        throw new KrpcError('BAD_REQUEST', `malformed kRPC envelope: ${f.message}`, { issues: f.issues });
      }
      const [seqIn, tokenIn, traceIn] = parseSys(env.data.sys);
      seq = seqIn ?? 0;
      if (traceIn) trace = traceIn;
      methodName = env.data.method;
      const m = Object.prototype.hasOwnProperty.call(def.methods, methodName) ? def.methods[methodName] : undefined;
      if (!m) throw new KrpcError('METHOD_NOT_FOUND', `service ${def.name} has no method "${methodName}"`);

      const token = tokenIn ?? bearerToken(req);
      let principal: Principal | null = null;
      if (m.auth === 'token') {
        if (!token) throw new KrpcError('UNAUTHENTICATED', `method ${def.name}.${methodName} needs a token in sys[1]`);
        if (!opts.authenticate) throw new KrpcError('INTERNAL', `service ${def.name} has no authenticator`);
        principal = await opts.authenticate(token);
      }
      const parsed = m.params.safeParse(env.data.params ?? {});
      if (!parsed.success) {
        const f = formatIssues(parsed.error, 'params');
        throw new KrpcError('INVALID_PARAMS', f.message, { issues: f.issues });
      }
      const ctx: CallContext = {
        principal,
        token: token ?? null,
        trace,
        seq,
        remoteAddress: clientAddress(req),
      };
      const handler = handlers[methodName as keyof M];
      const result = await runWithTrace(trace, () => handler(parsed.data as never, ctx));
      sendJson(res, 200, { result: result ?? null, sys: [seq, trace] });
      log?.debug({ trace, method: methodName, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'krpc ok');
    } catch (err) {
      const e = toKrpcError(err, trace);
      if (!res.headersSent) sendJson(res, e.httpStatus, { error: e.toJSON(), sys: [seq, trace] });
      log?.info({ trace, method: methodName, code: e.code }, 'krpc error');
    }
  }

  return { service: def, handle };
}
