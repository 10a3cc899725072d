// The node gateway (DESIGN §8): one local entry, `http://127.0.0.1:3180/kapi/<service>`, for every service wherever
// it runs. Routes come from `services/<s>/info` in system-config, followed by watch so a moved service is routed
// to its new instance without a restart, and kept on disk (RouteCache) for a start while system-config is out of reach.
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { sendJson, type Client } from '../../lib/krpc/index.ts';
import { type ServiceInfo, serviceInfoSchema } from '../../lib/config/zone-records.ts';

const INFO_KEY = /^services\/([a-z][a-z0-9-]*)\/info$/;


/** Where a request goes: the instance's node, and its host and port (this node's own: on the local service host). */
export interface RouteTarget {
  node: string;
  host: string;
  port: number;
  /** Chosen from the bootstrap list rather than a route: the host is not known, only the node. */
  fromBootstrap?: boolean;
}

export class RouteTable {
  private readonly routes = new Map<string, ServiceInfo>();
  private bootstrap = new Map<string, string[]>();

  /** `localHost` is where this node's own instances are reached: kernel services listen on the node's service host
   * (loopback by default), not on the address an instance is listed with for other nodes. */
  constructor(
    private readonly node: string,
    private readonly localHost = '127.0.0.1',
  ) {}

  apply(key: string, value: string | null): void {
    const m = INFO_KEY.exec(key);
    if (!m) return;
    if (value === null) {
      this.routes.delete(m[1]);
      return;
    }
    // A malformed info document is treated as absent: the route answers UNAVAILABLE rather than guessing.
    let doc: unknown;
    try {
      doc = JSON.parse(value);
    } catch {
      doc = undefined;
    }
    const info = serviceInfoSchema.safeParse(doc);
    if (info.success) this.routes.set(m[1], info.data);
    else this.routes.delete(m[1]);
  }

  replaceAll(entries: readonly { key: string; value: string }[]): void {
    this.routes.clear();
    for (const e of entries) this.apply(e.key, e.value);
  }

  /** Services a device that joined must reach before it has read a route (system-config itself, above all): they
   * go to these nodes, in order, whenever no route names a running instance. */
  setBootstrap(services: readonly string[], nodes: readonly string[]): void {
    this.bootstrap = new Map(services.map((s) => [s, [...nodes]]));
  }

  /**
   * A running instance, preferring this node's own; a starting one only when nothing runs (a restart in progress
   * answers a moment later rather than failing at once); else a bootstrap node. Among other nodes' instances, and
   * among bootstrap nodes, one on a node `reachable` says yes to comes first: a device whose tunnel is backing off
   * would fail the request at once, while the scheduler takes up to 90 s to call its instances dead. Nodes in `tried`
   * (a request that found them unreachable) are passed over.
   */
  pick(service: string, reachable: (node: string) => boolean = () => true, tried: ReadonlySet<string> = new Set()): RouteTarget | undefined {
    const instances = (this.routes.get(service)?.instances ?? []).filter((i) => !tried.has(i.node));
    for (const state of ['running', 'starting'] as const) {
      const ok = instances.filter((i) => i.state === state);
      const own = ok.find((i) => i.node === this.node);
      if (own) return { node: own.node, host: this.localHost, port: own.port };
      const other = ok.find((i) => reachable(i.node)) ?? ok[0];
      if (other) return { node: other.node, host: other.host, port: other.port };
    }
    const nodes = (this.bootstrap.get(service) ?? []).filter((n) => !tried.has(n));
    const fallback = nodes.find(reachable) ?? nodes[0];
    return fallback === undefined ? undefined : { node: fallback, host: '', port: 0, fromBootstrap: true };
  }

  /** The instance on one named node (running, or starting while a restart is in progress): for requests that must
   * reach a particular device's instance, such as storage nodes exchanging chunks (`NODE_HEADER` in lib/krpc). */
  on(service: string, node: string): RouteTarget | undefined {
    const instances = (this.routes.get(service)?.instances ?? []).filter((i) => i.node === node);
    const i = instances.find((x) => x.state === 'running') ?? instances.find((x) => x.state === 'starting');
    if (!i) return undefined;
    return node === this.node ? { node, host: this.localHost, port: i.port } : { node, host: i.host, port: i.port };
  }

  /** This node's own live instance of a service, for requests other devices send through the tunnel. */
  own(service: string): RouteTarget | undefined {
    const i = (this.routes.get(service)?.instances ?? []).find((x) => x.node === this.node && x.state !== 'dead');
    return i ? { node: i.node, host: this.localHost, port: i.port } : undefined;
  }

  services(): string[] {
    return [...this.routes.keys()].sort();
  }

  /** The routes as the `services/<s>/info` entries replaceAll takes, in a stable order. */
  entries(): { key: string; value: string }[] {
    return this.services().map((s) => ({ key: `services/${s}/info`, value: JSON.stringify(this.routes.get(s)) }));
  }
}

const cachedRoutesSchema = z.object({ device: z.string(), routes: z.array(z.object({ key: z.string(), value: z.string() })) });

/**
 * The last routes read, on disk: a device that restarts cut off from system-config still reaches the instances it
 * runs itself (node_daemon starts them from its cached run config) and those it last knew of elsewhere, until a list
 * succeeds. A burst of watch events costs one write, at most one per `minIntervalMs`; unchanged routes cost none.
 * The file names the device (its DID) that wrote it: `buckyos reset` leaves run/ in place, and another zone's routes
 * would send system-config calls to devices the new zone does not know instead of to its bootstrap peers.
 */
export class RouteCache {
  private written: string | undefined;
  private next: string | undefined;
  private lastWriteAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly device: string,
    private readonly warn: (message: string, err: Error) => void,
    private readonly minIntervalMs = 1000,
    /**
     * Services never taken from the cache: those with a bootstrap route (system-config above all). A cached route
     * outranks the bootstrap one, and after the zone's store moved (a move back to SQLite, this device now remote) the
     * cached system-config instances, its own among them, are gone: every list would fail through them, for good.
     */
    private readonly skip: ReadonlySet<string> = new Set(),
  ) {}

  /** Fills `table` from the file. An unreadable or malformed file, or another identity's, is passed over: routes are
   * only a start, and the first list replaces them anyway. */
  load(table: RouteTable): void {
    let text: string | null;
    try {
      text = readTextIfExists(this.path);
    } catch (e) {
      this.warn('the cached routes are unreadable; starting without them', e as Error);
      return;
    }
    if (text === null) return;
    let cached: z.infer<typeof cachedRoutesSchema>;
    try {
      cached = cachedRoutesSchema.parse(JSON.parse(text));
    } catch (e) {
      this.warn('the cached routes are malformed; starting without them', e as Error);
      return;
    }
    if (cached.device !== this.device) {
      this.warn('the cached routes are from before this device was activated; starting without them', new Error(`written by ${cached.device}`));
      return;
    }
    table.replaceAll(cached.routes.filter((r) => !this.skip.has(INFO_KEY.exec(r.key)?.[1] ?? '')));
    this.written = text;
  }

  save(table: RouteTable): void {
    if (this.closed) return;
    this.next = `${JSON.stringify({ device: this.device, routes: table.entries() })}\n`;
    if (this.timer) return;
    const wait = this.lastWriteAt + this.minIntervalMs - Date.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait).unref();
  }

  /** Writes what is still waiting, and nothing after: the last routes survive a stop. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const text = this.next;
    this.next = undefined;
    if (text === undefined || text === this.written) return;
    try {
      writeFileAtomic(this.path, text, 0o644);
      this.written = text;
    } catch (e) {
      this.warn('could not cache the routes', e as Error);
    }
    this.lastWriteAt = Date.now();
  }
}

/** `body`: the request's body when the caller has already read it (the UI listener checks kRPC envelopes first). */
export function proxy(req: IncomingMessage, res: ServerResponse, target: { host: string; port: number }, path: string, body?: Buffer): void {
  const upstream = httpRequest(
    {
      host: target.host,
      port: target.port,
      method: req.method,
      path,
      // The gateway is the entry: it states the peer it sees and never relays a client's own claim.
      // The Host the client addressed goes on as x-forwarded-host: protocols that name resources by URL (WebDAV's
      // Destination) compare against it.
      headers: {
        ...req.headers,
        host: `${target.host}:${target.port}`,
        'x-forwarded-for': req.socket.remoteAddress ?? '',
        'x-forwarded-host': req.headers['x-forwarded-host'] ?? req.headers.host ?? '',
      },
    },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
      up.on('end', () => {
        if (req.complete) return;
        // The instance answered without reading the whole body (413 for an oversized one). The rest is of no use to
        // it, but must still be read off the client's connection: left unread, it stalls the next request on that
        // keep-alive connection until the server times the connection out and resets it.
        req.unpipe(upstream);
        upstream.destroy();
        req.resume();
      });
    },
  );
  upstream.on('error', (e) => {
    if (!res.headersSent) sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `service instance unreachable: ${e.message}` } });
    // A complete answer stands: destroying the connection now would only break the client's next request on it.
    else if (!res.writableEnded) res.destroy();
  });
  cancelWhenGone(res, upstream);
  if (body) upstream.end(body);
  else req.pipe(upstream);
}

/**
 * Ends the upstream request when the client goes away before its answer is done: a paused pipe would otherwise hold
 * the connection to the service, and the service's answer with its open file and buffers, for as long as that
 * service keeps idle connections.
 */
export function cancelWhenGone(res: { once(event: 'finish' | 'close', fn: () => void): unknown }, upstream: { destroy(): void }): void {
  let finished = false;
  res.once('finish', () => (finished = true));
  res.once('close', () => {
    if (!finished) upstream.destroy();
  });
}

const LIST_LIMIT = 10_000;

/**
 * Keeps `table` in step with system-config: a full list, then watch from its revision; on error, back off and relist.
 * With a `cache`, the table starts from the routes it kept, and every change is kept in it.
 */
export async function followRoutes(
  config: Client<typeof systemConfigApi.methods>,
  table: RouteTable,
  signal: AbortSignal,
  onError: (err: unknown) => void,
  cache?: RouteCache,
): Promise<void> {
  if (cache) {
    cache.load(table);
    signal.addEventListener('abort', () => cache.close(), { once: true });
  }
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const listed = await config.list({ prefix: 'services/', limit: LIST_LIMIT });
      if (listed.entries.length >= LIST_LIMIT) onError(new Error(`services/ holds ${LIST_LIMIT} keys or more; routes past them are not seen`));
      // A full re-list replaces the table: a route deleted while the watch was down must not linger.
      table.replaceAll(listed.entries);
      cache?.save(table);
      let rev = listed.revision;
      backoff = 500;
      while (!signal.aborted) {
        const w = await config.watch({ prefix: 'services/', after_revision: rev, timeout_ms: 25_000 }, { timeoutMs: 35_000 });
        for (const ev of w.events) table.apply(ev.key, ev.value);
        cache?.save(table);
        rev = w.revision;
      }
    } catch (err) {
      if (signal.aborted) return;
      onError(err);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  }
}
