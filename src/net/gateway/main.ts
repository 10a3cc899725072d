// The node gateway process: follows service routes from system-config and proxies `/kapi/<service>` to them.
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { createHttpApp, listen, sendJson } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../../kernel/runtime.ts';
import { RouteTable, followRoutes, proxy } from './node-gateway.ts';

export async function runNodeGateway(rt: KernelRuntime, port: number): Promise<{ close(): Promise<void> }> {
  const host = rt.config.service_host;
  const table = new RouteTable(rt.identity.device.name, host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);
  const config = rt.localClient(systemConfigApi, rt.config.ports.system_config);
  const stop = new AbortController();
  void followRoutes(config, table, stop.signal, (err) => rt.log.warn({ err: (err as Error).message }, 'route watch failed; retrying'));

  const server = createHttpApp({
    name: 'gateway',
    health: () => ({ routes: table.services() }),
    fallback: (req, res, url) => {
      const m = /^\/kapi\/([a-z][a-z0-9-]*)(\/.*)?$/.exec(url.pathname);
      if (!m) return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${url.pathname}` } });
      const target = table.pick(m[1]);
      if (!target) return sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `no running instance of service "${m[1]}"` } });
      proxy(req, res, target, url.pathname + url.search);
    },
  });
  const running = await listen(server, port, '127.0.0.1');
  rt.log.info({ port: running.port }, 'node gateway listening');
  return {
    close: async () => {
      stop.abort();
      await running.close();
    },
  };
}
