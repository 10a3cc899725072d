// A cyfs-ns worker process: started by the primary (server.ts) when `workers` > 1, it answers UDP queries on the
// primary's own sockets (inherited descriptors with batched UDP, dgram handles otherwise) with its own resolver and
// cache, and reports its statistics when asked.
import type dgram from 'node:dgram';
import { createLogger, type Logger } from '../../lib/log/logger.ts';
import { Resolver } from './resolver.ts';
import { type WorkerMessage, serveUdp, serveUdpBatch, trimAfterTraffic } from './server.ts';
import { loadUdpBatch } from './udp-batch.ts';

let resolver: Resolver | null = null;
let log: Logger | null = null;
let ednsSize = 1232;
/** Sockets that arrived before the resolver was built. */
const waiting: dgram.Socket[] = [];

function send(m: WorkerMessage): void {
  process.send?.(m);
}

async function init(m: Extract<WorkerMessage, { type: 'init' }>): Promise<void> {
  const cfg = m.config;
  log = await createLogger({ service: `cyfs-ns-w${m.index}`, logsDir: cfg.log.dir ?? undefined, level: cfg.log.level });
  const queryLog = cfg.query_log.enabled ? await createLogger({ service: `cyfs-ns-queries-w${m.index}`, logsDir: cfg.log.dir ?? undefined }) : null;
  resolver = new Resolver({ config: cfg, log, queryLog });
  ednsSize = cfg.edns_udp_size;
  if (m.batchFds.length > 0) {
    const loaded = loadUdpBatch();
    if (!('addon' in loaded)) throw new Error(`the primary answers UDP in batches, and this worker cannot: ${loaded.reason}`);
    for (const fd of m.batchFds) serveUdpBatch(loaded.addon, fd, resolver, ednsSize, log);
    trimAfterTraffic(loaded.addon, resolver.stats);
  }
  for (const s of waiting.splice(0)) serveUdp(s, resolver, ednsSize, log);
  send({ type: 'ready' });
}

process.on('message', (m: WorkerMessage, handle: unknown) => {
  switch (m.type) {
    case 'init':
      init(m).catch((err) => {
        console.error(`cyfs-ns worker ${m.index} could not start: ${(err as Error).message}`);
        process.exit(1);
      });
      break;
    case 'udp': {
      const sock = handle as dgram.Socket;
      if (resolver && log) serveUdp(sock, resolver, ednsSize, log);
      else waiting.push(sock);
      break;
    }
    case 'stats':
      if (resolver) send({ type: 'stats-reply', id: m.id, part: resolver.part() });
      break;
    case 'reload':
      try {
        resolver?.reload();
      } catch (err) {
        send({ type: 'reload-failed', error: (err as Error).message });
      }
      break;
    case 'stop':
      resolver?.close();
      process.exit(0);
  }
});

// The primary is gone (even killed): a worker must not keep answering on its own.
process.on('disconnect', () => process.exit(0));
