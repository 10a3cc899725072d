// `buckyos service activation`: the activation service as a process of its own. Unactivated, it serves the activation
// page and kRPC on its port and, when that port is on the LAN, announces the device over mDNS. Once the device is
// activated it stops announcing, stays on its port until the zone's system UI answers (the owner's page asks it,
// through `status`, when to open the UI), then stops listening and resolves `activated`; the caller then exits (the log
// file's rotation timer would keep the process alive). node_daemon boots the zone meanwhile.
import { request } from 'node:http';
import pkg from '../../../package.json' with { type: 'json' };
import { type NodePaths, loadNodeConfig, nodePaths } from '../../lib/config/node-config.ts';
import { isActivated } from '../../lib/identity/node-identity.ts';
import { type RunningServer, listen } from '../../lib/krpc/index.ts';
import { createLogger } from '../../lib/log/logger.ts';
import { type Discovery, startDiscovery } from './discovery.ts';
import { createActivationApp, describeDevice } from './service.ts';

// main.ts is this service's public face (.dependency-cruiser.cjs): the CLI runs the service and resets.
export { type ResetReport, resetNode } from './reset.ts';

/** After activation, how long the port stays open once the system UI answers, so a page polling every second or two
 * sees it; and how long at most it waits for the UI. */
export const HANDOVER_GRACE_MS = 10_000;
export const HANDOVER_MAX_MS = 3 * 60_000;

export interface ActivationService extends RunningServer {
  paths: NodePaths;
  /** Resolves once the device is activated, the hand-over to the system UI is over, the server has stopped and the
   * log is flushed. */
  activated: Promise<void>;
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;

/** Whether the system UI answers, asked from this device; any HTTP answer counts (even "not built"). node:http rather
 * than fetch: node_daemon runs this service with --lite-mode, which leaves no WebAssembly for fetch's HTTP parser. */
function uiAnswers(host: string, port: number): Promise<boolean> {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return new Promise((resolve) => {
    const req = request({ host: h, port, method: 'HEAD', path: '/', timeout: 1000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

export async function runActivationService(root: string, port: number, host: string): Promise<ActivationService> {
  const paths = nodePaths(root);
  const config = loadNodeConfig(paths);
  const log = await createLogger({ service: 'activation', logsDir: paths.logs, level: config.log_level });
  let done!: () => void;
  const activated = new Promise<void>((resolve) => (done = resolve));
  const probe = () => uiAnswers(config.ui_host, config.ports.ui);
  // Announcing an address nobody else can reach would only list a dead link on the other devices' pages.
  let discovery: Discovery | undefined;
  const app = createActivationApp({
    paths,
    logger: log,
    ui: { port: config.ports.ui, probe },
    get discovery() {
      return discovery;
    },
    onActivated: () => void handOver(),
  });

  async function handOver(): Promise<void> {
    log.info('device activated; stopping the LAN announcement and waiting for the system UI before leaving the port');
    await discovery?.stop();
    const deadline = Date.now() + HANDOVER_MAX_MS;
    while (Date.now() < deadline && !(await probe())) await new Promise((r) => setTimeout(r, 500));
    if (Date.now() < deadline) await new Promise((r) => setTimeout(r, HANDOVER_GRACE_MS));
    else log.warn({ port: config.ports.ui }, 'the system UI did not answer; the activation service stops anyway');
    // Graceful close: idle keep-alive connections are dropped at once.
    app.close(() => {
      log.info('the activation service stops');
      log.flush();
      done();
    });
    app.closeIdleConnections();
  }

  const running = await listen(app, port, host);
  if (!isActivated(paths.etc) && !LOOPBACK.test(host)) {
    discovery = startDiscovery({ name: describeDevice(paths).name, port: running.port, version: pkg.version, log });
  }
  log.info({ host, port: running.port, activated: isActivated(paths.etc), mdns: discovery !== undefined }, 'activation service listening');
  return {
    ...running,
    close: async () => {
      await discovery?.stop();
      await running.close();
    },
    paths,
    activated,
  };
}
