// The node gateway process: follows service routes from system-config, proxies `/kapi/<service>` to the instance
// (on this device directly, on another device through its tunnel), serves this device's tunnel port, and serves the
// system UI on the LAN (ui-listener.ts).
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { KernelServiceName } from '../../lib/config/node-config.ts';
import { enrolPeerSchema } from '../../lib/identity/documents.ts';
import { IDENTITY_FILES } from '../../lib/identity/node-identity.ts';
import { CLIENT_HEADER, NODE_HEADER, createHttpApp, listen, sendJson } from '../../lib/krpc/index.ts';
import { TunnelClient, type TunnelPeer, deviceTunnelCert, startTunnelServer } from '../../lib/tunnel/index.ts';
import type { KernelRuntime } from '../../kernel/runtime.ts';
import { RouteCache, RouteTable, followRoutes, proxy } from './node-gateway.ts';
import { handleAnonymous, proxyFromTunnel, proxyThroughTunnel } from './tunnel-routes.ts';
import { startUiListener } from './ui-listener.ts';

/** The built system UI (scripts/build-ui.ts): `dist/ui` of this checkout, from the sources and from dist/ alike. */
const UI_DIR = fileURLToPath(new URL('../../../dist/ui', import.meta.url));

/** What a device that joined reaches before it has read any route: the zone's control plane on the core devices it
 * enrolled with. */
const BOOTSTRAP_SERVICES: KernelServiceName[] = ['system-config', 'verify-hub', 'klog'];

/** Under the node's run directory: the routes last read, which the gateway starts from (RouteCache). */
const ROUTES_FILE = 'routes.json';

function readPeers(rt: KernelRuntime): TunnelPeer[] {
  const path = join(rt.paths.etc, IDENTITY_FILES.peers);
  try {
    return z.array(enrolPeerSchema).parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (e) {
    throw new Error(`${path} is not a list of core devices: ${(e as Error).message}`);
  }
}

export async function runNodeGateway(rt: KernelRuntime, port: number): Promise<{ close(): Promise<void> }> {
  const host = rt.config.service_host;
  const self = rt.identity.device.name;
  const table = new RouteTable(self, host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);
  const peers = rt.backend === 'remote' ? readPeers(rt) : [];
  const peerByName = new Map(peers.map((p) => [p.name, p]));
  if (peers.length) table.setBootstrap(BOOTSTRAP_SERVICES, peers.map((p) => p.name));
  const config = rt.configClient();
  const stop = new AbortController();
  const routesFile = join(rt.paths.run, ROUTES_FILE);
  const cache = new RouteCache(routesFile, rt.identity.device.did, (message, err) => rt.log.warn({ path: routesFile, err: err.message }, message), undefined, new Set(BOOTSTRAP_SERVICES));
  void followRoutes(config, table, stop.signal, (err) => rt.log.warn({ err: (err as Error).message }, 'route watch failed; retrying'), cache);

  const devices = rt.devices();
  const cert = await deviceTunnelCert(rt.identity);
  const tunnel = new TunnelClient({
    key: rt.identity.deviceKey,
    certPem: cert,
    onBackoff: (peer, delayMs, cause) => rt.log.warn({ peer, delay_ms: delayMs, err: cause.message }, 'tunnel to device failed; retrying'),
    onConnect: (peer) => rt.log.info({ peer }, 'tunnel to device up'),
  });
  /** How another device is reached: its key from its document, its address from the route or its last report. */
  const peerFor = (node: string, routeHost: string | undefined): TunnelPeer | undefined => {
    const d = devices.byName(node);
    // peers.json only bridges the time before the directory is read: once it is, a device it does not list (removed)
    // is not reached at all.
    if (!d && devices.loaded) return undefined;
    const known = peerByName.get(node);
    const key = d?.doc.key ?? known?.key;
    const ip = routeHost ?? d?.addresses[0];
    if (!key) return undefined;
    if (ip) return { name: node, key, address: `${ip.includes(':') ? `[${ip}]` : ip}:${rt.config.ports.tunnel}` };
    return known;
  };

  const tunnelServer = await startTunnelServer({
    host: rt.config.tunnel_host,
    port: rt.config.ports.tunnel,
    key: rt.identity.deviceKey,
    certPem: cert,
    allowAnonymous: true,
    authorizePeer: (key) => devices.byKey(key)?.doc.name ?? null,
    onError: (err) => rt.log.warn({ err: err.message }, 'tunnel peer refused or lost'),
    handler: (req, res, peer) => {
      if (peer === null) return handleAnonymous(req, res, table.own('verify-hub')?.port);
      const m = /^\/kapi\/([a-z][a-z0-9-]*)(\/.*)?(\?.*)?$/.exec(req.url);
      const target = m ? table.own(m[1]!) : undefined;
      if (!m || !target) {
        res.writeHead(m ? 503 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: m ? 'UNAVAILABLE' : 'NOT_FOUND', message: m ? `service "${m[1]}" does not run on ${self}` : `no route for ${req.url}` } }));
        return;
      }
      const client = req.headers[CLIENT_HEADER];
      proxyFromTunnel(req, res, target.port, typeof client === 'string' && client ? client : (req.socket.remoteAddress ?? ''));
    },
  });
  devices.onRemoved((gone) => {
    tunnelServer.revalidate();
    for (const d of gone) tunnel.drop(d.doc.name);
  });
  void devices.follow();

  const reachable = (n: string) => tunnel.state(n) !== 'backoff';
  /**
   * Routes `/kapi/<service>` to an instance, here or through a tunnel; `body` when the caller already read it. A
   * request that could not reach a device at all goes to the next instance (`tried`: the devices it could not reach):
   * the first calls after a device went down are answered, not only those after its tunnel began backing off.
   */
  const route = (req: IncomingMessage, res: ServerResponse, url: URL, body?: Buffer, tried: ReadonlySet<string> = new Set()): void => {
    const m = /^\/kapi\/([a-z][a-z0-9-]*)(\/.*)?$/.exec(url.pathname);
    if (!m) return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${url.pathname}` } });
    const wanted = req.headers[NODE_HEADER];
    const node = typeof wanted === 'string' && wanted ? wanted : undefined;
    const target = node ? table.on(m[1]!, node) : table.pick(m[1]!, reachable, tried);
    if (!target) {
      return sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: node ? `service "${m[1]}" does not run on ${node}` : `no running instance of service "${m[1]}"` } });
    }
    if (target.node === self) return proxy(req, res, target, url.pathname + url.search, body);
    const peer = peerFor(target.node, target.fromBootstrap ? undefined : target.host);
    if (!peer) return sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `device ${target.node} of service "${m[1]}" is not a known zone device` } });
    const elsewhere = node
      ? undefined
      : () => {
          const next = new Set(tried).add(target.node);
          if (table.pick(m[1]!, reachable, next) === undefined) return false;
          route(req, res, url, body, next);
          return true;
        };
    proxyThroughTunnel(tunnel, peer, req, res, url.pathname + url.search, body, elsewhere);
  };

  const server = createHttpApp({
    name: 'gateway',
    health: () => ({ routes: table.services() }),
    fallback: (req, res, url) => {
      // A fragment never belongs in a request (RFC 9110 §7.1); parsing would drop it silently and widen the target.
      if (req.url?.includes('#')) return sendJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'the request URI has a fragment (#...)' } });
      // Content by id and WebDAV are the storage service's, at the short paths clients expect.
      const alias = /^\/(ndn|dav)(\/.*)?$/.exec(url.pathname);
      if (alias) {
        url = new URL(`/kapi/dfs/${alias[1]}${alias[2] ?? ''}${url.search}`, url);
        // WebDAV answers name resources by URL: the service must write them under the prefix the client used.
        req.headers['x-forwarded-prefix'] = `/${alias[1]}`;
      }
      route(req, res, url);
    },
  });
  const running = await listen(server, port, '127.0.0.1');
  rt.log.info({ port: running.port, tunnel_port: tunnelServer.port }, 'node gateway listening');
  const ui = startUiListener({ host: rt.config.ui_host, port: rt.config.ports.ui, dir: UI_DIR, route, log: rt.log });
  return {
    close: async () => {
      stop.abort();
      devices.close();
      await Promise.all([running.close(), ui.close(), tunnelServer.close(), tunnel.close()]);
    },
  };
}
