// `buckyos service activation`: the activation service as a process of its own. Once the device is activated it
// stops listening and resolves `activated`; the caller then exits (the log file's rotation timer would keep the
// process alive), and its supervisor starts the zone's services.
import { type NodePaths, loadNodeConfig, nodePaths } from '../../lib/config/node-config.ts';
import { isActivated } from '../../lib/identity/node-identity.ts';
import { type RunningServer, listen } from '../../lib/krpc/index.ts';
import { createLogger } from '../../lib/log/logger.ts';
import { createActivationApp } from './service.ts';

// main.ts is this service's public face (.dependency-cruiser.cjs): the CLI runs the service and resets.
export { type ResetReport, resetNode } from './reset.ts';

export interface ActivationService extends RunningServer {
  paths: NodePaths;
  /** Resolves once the device is activated, the server has stopped and the log is flushed. */
  activated: Promise<void>;
}

export async function runActivationService(root: string, port: number, host: string): Promise<ActivationService> {
  const paths = nodePaths(root);
  const log = await createLogger({ service: 'activation', logsDir: paths.logs, level: loadNodeConfig(paths).log_level });
  let done!: () => void;
  const activated = new Promise<void>((resolve) => (done = resolve));
  const app = createActivationApp({
    paths,
    logger: log,
    onActivated: () => {
      log.info('device activated; the activation service stops');
      // Graceful close: the commit answer is already sent, and idle keep-alive connections are dropped at once.
      app.close(() => {
        log.flush();
        done();
      });
    },
  });
  const running = await listen(app, port, host);
  log.info({ host, port: running.port, activated: isActivated(paths.etc) }, 'activation service listening');
  return { ...running, paths, activated };
}
