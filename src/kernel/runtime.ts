// What every kernel service process shares: where the node's state is, who the node is, how to log, how to prove
// its own identity to other services (a service token signed by the device key), and how to check callers' tokens.
import type { KeyObject } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { type NodeConfig, type NodePaths, loadNodeConfig, nodePaths } from '../lib/config/node-config.ts';
import { type NodeIdentity, loadNodeIdentity } from '../lib/identity/node-identity.ts';
import { SERVICE_TOKEN_TTL_SEC, createTokenVerifier, signAccessToken } from '../lib/identity/tokens.ts';
import { didDev, keyFromDidDev } from '../lib/identity/keys.ts';
import { type Client, type MethodMap, type Principal, type ServiceDef, createClient } from '../lib/krpc/index.ts';
import { type Logger, createLogger } from '../lib/log/logger.ts';
import { type AuditSink, createAuditSink } from '../lib/log/audit-sink.ts';
import { klogApi } from '../lib/api/klog.ts';

export interface KernelRuntime {
  name: string;
  paths: NodePaths;
  config: NodeConfig;
  identity: NodeIdentity;
  log: Logger;
  serviceToken(): Promise<string>;
  authenticate(token: string): Promise<Principal>;
  /** Lets this node trust service tokens signed by another zone device whose owner-signed document was verified. */
  trustDevice(did: string): void;
  /** Client for a kernel service on this node, called on its own port (no dependency on the gateway being up). */
  localClient<M extends MethodMap>(api: ServiceDef<M>, port: number): Client<M>;
  /** Client for any service through this node's gateway. */
  gatewayClient<M extends MethodMap>(api: ServiceDef<M>): Client<M>;
  /** The zone's audit stream (klog on this node), queued and retried so auditing never blocks the action. */
  audit: AuditSink;
}

export async function createKernelRuntime(name: string, root?: string): Promise<KernelRuntime> {
  const paths = nodePaths(root);
  const config = loadNodeConfig(paths);
  const log = await createLogger({ service: name, logsDir: paths.logs, level: config.log_level });
  const identity = await loadNodeIdentity(paths.etc);
  const ownDid = didDev(identity.deviceKey.publicKeyB64);
  const trusted = new Map<string, KeyObject>([[ownDid, identity.deviceKey.publicKey]]);

  let cached: { token: string; renewAt: number } | null = null;
  async function serviceToken(): Promise<string> {
    const now = Date.now();
    if (cached && now < cached.renewAt) return cached.token;
    const token = await signAccessToken(
      { typ: 'service', sub: name, app: name, jti: randomUUID() },
      identity.deviceKey.privateKey,
      SERVICE_TOKEN_TTL_SEC,
      ownDid,
    );
    cached = { token, renewAt: now + (SERVICE_TOKEN_TTL_SEC * 1000) / 2 };
    return token;
  }

  const authenticate = createTokenVerifier(() => ({
    verifyHubKey: identity.verifyHubKey,
    deviceKey: (did) => trusted.get(did),
  }));

  const klog = createClient(klogApi, { baseUrl: `http://127.0.0.1:${config.ports.klog}`, token: serviceToken });
  const audit = createAuditSink((event) => klog.audit_append({ event }).then(() => undefined), log);

  return {
    name,
    paths,
    audit,
    config,
    identity,
    log,
    serviceToken,
    authenticate,
    trustDevice(did) {
      trusted.set(did, keyFromDidDev(did));
    },
    localClient: (api, port) => createClient(api, { baseUrl: `http://127.0.0.1:${port}`, token: serviceToken }),
    gatewayClient: (api) => createClient(api, { baseUrl: `http://127.0.0.1:${config.ports.gateway}`, token: serviceToken }),
  };
}
