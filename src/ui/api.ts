// The page's connection to the zone: the session, and typed kRPC clients for the services the pages use, all
// through the gateway on the page's own origin. A call made with an expired access token is renewed and retried
// once; a call refused as unauthenticated ends the session (it was revoked, or its user disabled).
import { dfsApi } from '../lib/api/dfs.ts';
import { klogApi } from '../lib/api/klog.ts';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { verifyHubApi } from '../lib/api/verify-hub.ts';
import type { Client } from '../lib/krpc/call.ts';
import { KrpcError } from '../lib/krpc/errors.ts';
import { createFetchClient } from '../lib/krpc/fetch-client.ts';
import type { MethodMap, ServiceDef } from '../lib/krpc/service.ts';
import { SessionStore } from './session.ts';

export const session = new SessionStore({
  storage: window.sessionStorage,
  hub: (token) => createFetchClient(verifyHubApi, { token }),
});

/** Methods whose UNAUTHENTICATED means a wrong password typed into them, not a dead session. */
const CHECKS_PASSWORD = new Set(['verify-hub.sudo', 'verify-hub.user_set_password']);

function authed<M extends MethodMap>(def: ServiceDef<M>): Client<M> {
  const raw = createFetchClient(def, { token: () => session.token() }) as Record<string, (p: unknown, o?: { timeoutMs?: number }) => Promise<unknown>>;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(def.methods)) {
    const call = raw[name]!;
    out[name] = async (params: unknown, opts?: { timeoutMs?: number }) => {
      try {
        return await call(params, opts);
      } catch (e) {
        if (!(e instanceof KrpcError)) throw e;
        if (e.code === 'TOKEN_EXPIRED' && (await session.refresh())) return call(params, opts);
        if (e.code === 'UNAUTHENTICATED' && !CHECKS_PASSWORD.has(`${def.name}.${name}`)) session.expire();
        throw e;
      }
    };
  }
  return out as Client<M>;
}

export const api = {
  hub: authed(verifyHubApi),
  config: authed(systemConfigApi),
  dfs: authed(dfsApi),
  klog: authed(klogApi),
};
