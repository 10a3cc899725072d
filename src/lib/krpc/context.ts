// Per-call context. The trace id lives in AsyncLocalStorage so that every kRPC call a handler makes downstream
// carries the caller's trace without each handler threading it by hand.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

/** Who is calling, as established from a verified token. */
export interface Principal {
  /** User id for user tokens; service name for kernel service tokens. */
  userId: string;
  /** The app the token was issued to (e.g. `control-panel`, `buckyos-cli`, or an installed app id). */
  appId: string;
  kind: 'session' | 'sudo' | 'service';
  /** Session id, for tokens that belong to a login session. */
  sessionId?: string;
  /** Unix seconds. */
  expiresAt: number;
  /** For service tokens: the device (`did:dev:...`) whose key signed it, i.e. where the service runs. */
  device?: string;
  /** For service tokens: that device's name and role, from its signed document as trusted when the token was last
   * used. RBAC bounds a kernel service by its device's role (docs/rbac.md, the device side). */
  deviceName?: string;
  deviceRole?: string;
}

/** Whether `p` is a kernel service on a core device: the kernel in full. A kernel service on any other device, or on
 * one whose role is unknown, is bounded by its device's role (RBAC's device side); a service that authorises without
 * RBAC gives it only what such a device needs. */
export function isCoreKernel(p: Principal): boolean {
  return p.kind === 'service' && p.deviceRole === 'core';
}

export interface CallContext {
  principal: Principal | null;
  /** The raw token, so a handler can forward it when acting on the caller's behalf. */
  token: string | null;
  trace: string;
  seq: number;
  remoteAddress: string;
}

const traceStore = new AsyncLocalStorage<string>();

export function newTraceId(): string {
  return randomBytes(8).toString('hex');
}

export function currentTrace(): string | undefined {
  return traceStore.getStore();
}

/** Calls running inside runWithTrace now. */
let tracing = 0;

/**
 * Runs a call with its trace id in reach of every kRPC call it makes. The store is switched off again once no call
 * is inside it: while any AsyncLocalStorage is on, Node 20 runs hooks on every promise of the process, which cost a
 * data path (a WebDAV upload through dfs) about a third of its throughput for as long as they stay on. Work a call
 * leaves running after it answers makes its own trace from then on.
 */
export async function runWithTrace<T>(trace: string, fn: () => Promise<T> | T): Promise<T> {
  tracing++;
  try {
    return await traceStore.run(trace, fn);
  } finally {
    if (--tracing === 0) traceStore.disable();
  }
}
