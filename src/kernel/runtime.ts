// What every kernel service process shares: where the node's state is, who the node is, how to log, how to prove
// its own identity to other services (a service token signed by the device key), and how to check callers' tokens.
import { randomUUID } from 'node:crypto';
import { type ConfigBackendKind, type NodeConfig, type NodePaths, configBackendKind, loadNodeConfig, nodePaths } from '../lib/config/node-config.ts';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { DeviceDirectory } from '../lib/identity/device-directory.ts';
import { type NodeIdentity, loadNodeIdentity } from '../lib/identity/node-identity.ts';
import { SERVICE_TOKEN_TTL_SEC, type TrustedDevice, createTokenVerifier, signAccessToken } from '../lib/identity/tokens.ts';
import { didDev } from '../lib/identity/keys.ts';
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
  /** The zone's devices, followed from system-config once something asks (a token from another device, a tunnel). */
  devices(): DeviceDirectory;
  /** A device of this zone by did:dev, as its verified document describes it (this device always knows itself, even
   * before node_daemon has published its document); undefined for any other device. */
  trustedDevice(did: string): Promise<TrustedDevice | undefined>;
  /** Where this node's system-config is (node-config.ts configBackendKind). */
  backend: ConfigBackendKind;
  /** system-config: on this node's own port when it runs an instance, else through the gateway to a core device. */
  configClient(): Client<typeof systemConfigApi.methods>;
  /** Client for a kernel service on this node, called on its own port (no dependency on the gateway being up). */
  localClient<M extends MethodMap>(api: ServiceDef<M>, port: number): Client<M>;
  /** Client for any service through this node's gateway. */
  gatewayClient<M extends MethodMap>(api: ServiceDef<M>): Client<M>;
  /** The zone's audit stream (klog on this node), queued and retried so auditing never blocks the action. */
  audit: AuditSink;
  /** Stops following the zone's devices (node_daemon replaces its runtime when the device switches backends). */
  close(): void;
}

export async function createKernelRuntime(name: string, root?: string): Promise<KernelRuntime> {
  const paths = nodePaths(root);
  const config = loadNodeConfig(paths);
  const log = await createLogger({ service: name, logsDir: paths.logs, level: config.log_level });
  const identity = await loadNodeIdentity(paths.etc);
  const ownDid = didDev(identity.deviceKey.publicKeyB64);
  const backend = configBackendKind(paths, config);

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

  const localClient = <M extends MethodMap>(api: ServiceDef<M>, port: number) => createClient(api, { baseUrl: `http://127.0.0.1:${port}`, token: serviceToken });
  const gatewayClient = <M extends MethodMap>(api: ServiceDef<M>) => createClient(api, { baseUrl: `http://127.0.0.1:${config.ports.gateway}`, token: serviceToken });
  const configClient = () => (backend === 'remote' ? gatewayClient(systemConfigApi) : localClient(systemConfigApi, config.ports.system_config));

  let directory: DeviceDirectory | null = null;
  const devices = (): DeviceDirectory => {
    if (!directory) {
      directory = new DeviceDirectory({ config: configClient(), boot: identity.boot, log });
      directory.onRemoved((gone) => {
        for (const d of gone) authenticate.forgetDevice(d.doc.did);
      });
      void directory.follow();
    }
    return directory;
  };
  const self: TrustedDevice = { key: identity.deviceKey.publicKey, name: identity.device.name, role: identity.device.role };
  const trustedDevice = async (did: string): Promise<TrustedDevice | undefined> => {
    if (did === ownDid) return self;
    const d = await devices().byDid(did);
    return d && { key: d.publicKey, name: d.doc.name, role: d.doc.role };
  };
  const authenticate = createTokenVerifier(() => ({
    verifyHubKey: identity.verifyHubKey,
    device: trustedDevice,
  }));

  // A device that reaches the zone remotely has no klog of its own: its audit events go to a core device's.
  const klog = backend === 'remote' ? gatewayClient(klogApi) : localClient(klogApi, config.ports.klog);
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
    devices,
    trustedDevice,
    backend,
    configClient,
    localClient,
    gatewayClient,
    close() {
      directory?.close();
      audit.stop();
    },
  };
}
