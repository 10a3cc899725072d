// `buckyos service dfs`: the dcfs-lite storage service of one node (docs/dcfs.md). It runs where storage is
// configured (the scheduler places it), opens this node's disks, holds the metadata of volumes it is primary or
// follower for, serves the file API, HTTP, WebDAV and NDN, exchanges chunks and logs with other nodes' instances,
// scrubs its disks and re-replicates what its volumes need, and reports its disks to system-config for every other
// node to place chunks by.
import { createServer } from 'node:http';
import { join } from 'node:path';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import { createHttpApp, listen, listenRetrying } from '../../lib/krpc/index.ts';
import { NO_ROLES, type RoleOf } from '../../lib/krpc/operators.ts';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import { followPolicy } from '../../lib/rbac/config-sync.ts';
import { type DiskRecord, VOLUME_KEY, volumeRecordSchema } from '../../lib/config/storage-records.ts';
import type { KernelRuntime } from '../../kernel/runtime.ts';
import type { BasicGrant } from './basic-sessions.ts';
import { ChunkIO } from './chunk-io.ts';
import { DiskSet } from './disks.ts';
import { Files } from './files.ts';
import { hashEngine } from './hashing.ts';
import { AccountReader, syncHomes } from './homes.ts';
import { DfsHttp, continueWhenRead } from './http.ts';
import { PeerChunks } from './peers.ts';
import { Collector, DEFAULT_GC, fileMarks, localLivePage, withDiskMarks } from './gc.ts';
import { Scrubber } from './scrub.ts';
import { createDfsEndpoint } from './service.ts';
import { Uploads } from './uploads.ts';
import { VolumeSet } from './volumes.ts';
import { ZoneView, type ZoneStorage, statusKey } from './zone-view.ts';

/** How often this node writes what its disks hold and have free, for other nodes' placement. */
const REPORT_MS = 10_000;
/** The most volume records one list reads; a zone with more is refused by collection rather than half read. */
const VOLUME_LIST_MAX = 10_000;

const IDLE_SOCKET_MS = 120_000;

function grantOf(t: { session_token: string; refresh_token: string; expires_at: number }): BasicGrant {
  return { token: t.session_token, refreshToken: t.refresh_token, expiresAt: t.expires_at * 1000 };
}

export async function runDfsService(rt: KernelRuntime, port: number, roleOf: RoleOf = NO_ROLES): Promise<{ close(): Promise<void> }> {
  const self = rt.identity.device.name;
  const dataDir = join(rt.paths.data, 'dfs');
  const gatewayUrl = `http://127.0.0.1:${rt.config.ports.gateway}`;
  const config = rt.configClient();
  const stop = new AbortController();
  const rbac = await Rbac.create();
  await followPolicy(config, rbac, stop.signal, (err) => rt.log.error({ err: (err as Error).message }, 'dfs: RBAC policy sync failed'));

  const zoneView = new ZoneView(config, rt.log);
  const zone = () => zoneView.current;
  const peers = new PeerChunks({ gatewayUrl, token: () => rt.serviceToken() });
  const disks = new DiskSet(rt.log, join(dataDir, 'disks-made.json'));
  const volumes = new VolumeSet(self, dataDir, peers, rt.log, {
    retention: { windowMs: rt.config.dfs_log_retention_s * 1000, keepEntries: rt.config.dfs_log_keep_entries },
    trashRetentionMs: rt.config.dfs_trash_retention_s * 1000,
  });
  const io = new ChunkIO(self, disks, peers, zone, () => zoneView.refresh());
  const files = new Files({ self, volumes, io, zone, rbac });
  const uploads = new Uploads(join(dataDir, 'uploads'));
  const scrubber = new Scrubber(disks, io, volumes, zone, rt.log);
  const collector = new Collector({
    disks: () => disks.open(),
    // Read afresh for every round, and all of them or none: a volume missed here would lose every chunk it names.
    volumes: async () => {
      const { entries } = await config.list({ prefix: 'storage/volumes/', limit: VOLUME_LIST_MAX });
      if (entries.length >= VOLUME_LIST_MAX) throw new Error(`more than ${VOLUME_LIST_MAX - 1} keys under storage/volumes/`);
      return entries.map((e) => {
        const name = VOLUME_KEY.exec(e.key)?.[1];
        const rec = name === undefined ? null : volumeRecordSchema.safeParse(JSON.parse(e.value) as unknown);
        if (!name || !rec?.success) throw new Error(`${e.key} is not a volume record this node can read`);
        return { name, primary: rec.data.primary, created_at: rec.data.created_at };
      });
    },
    page: async (volume, primary, after, limit) =>
      primary === self ? localLivePage(volumes, files, volume, after, limit) : peers.live(primary, volume, after, limit),
    marks: withDiskMarks(fileMarks(join(dataDir, 'gc-marks.json')), () => disks.open().map((d) => d.store)),
    log: rt.log,
  }, { ...DEFAULT_GC, graceMs: rt.config.dfs_gc_grace_s * 1000 });

  const hub = rt.gatewayClient(verifyHubApi);
  const http = new DfsHttp({
    self, gatewayUrl, files, uploads, disks, volumes, io,
    authenticate: (t) => rt.authenticate(t),
    basicLogin: async (username, password) => {
      const { nonce } = await hub.login_nonce({});
      // The session stays inside dfs: WebDAV clients send their password on every request, and get files only.
      return grantOf(await hub.login_password({ username, password, nonce, app_id: 'control-panel' }));
    },
    basicRefresh: async (refresh_token) => grantOf(await hub.refresh({ refresh_token })),
    log: rt.log,
  });
  const endpoint = createDfsEndpoint({
    self, gatewayUrl, files, uploads, disks, volumes, zone, scrubber, collector,
    authenticate: (t) => rt.authenticate(t),
    roleOf,
    log: rt.log,
  });

  let reporting = Promise.resolve();
  const report = () => {
    reporting = reporting.then(async () => {
      try {
        await config.set({ key: statusKey(self), value: JSON.stringify({ disks: await disks.report(), at: Date.now() }) });
      } catch (err) {
        rt.log.warn({ err: (err as Error).message }, 'dfs: reporting disks failed');
      }
    });
    return reporting;
  };
  const myDisks = (z: ZoneStorage) => new Map<string, DiskRecord>(z.disks.filter((d) => d.node === self).map((d) => [d.disk, d.record]));
  // The view follows the key this node reports to, so reporting on every change would answer its own report, again
  // and again: only a change of this node's disk records is acted on here, and the timer retries disks that failed.
  let synced = '';
  // A disk added anywhere, or one set draining, is work for re-replication and rebalancing: soon, not at the next tick.
  let diskSet = '';
  let soon: NodeJS.Timeout | undefined;
  zoneView.onChange((z) => {
    const mine = myDisks(z);
    const key = JSON.stringify([...mine]);
    if (key !== synced) {
      synced = key;
      void disks.sync(mine).then(report);
    }
    volumes.sync(z.volumes);
    const all = JSON.stringify(z.disks.map((d) => [d.node, d.disk, d.record.state]).sort());
    if (diskSet !== '' && all !== diskSet) {
      clearTimeout(soon);
      soon = setTimeout(() => void scrubber.replicate(), 3000);
    }
    diskSet = all;
  });
  void zoneView.follow(stop.signal);
  await zoneView.loaded();
  await disks.sync(myDisks(zone()));
  await report();
  const reporter = setInterval(() => void disks.sync(myDisks(zone())).then(report), REPORT_MS);
  // Every account has a home folder on every volume this node is primary for (made here, owned by the user), and what
  // a volume keeps for an account that is gone is set aside before the name can pass to another (homes.ts).
  const accounts = new AccountReader(config);
  const homes = async () => {
    try {
      const zoneAccounts = await accounts.read();
      for (const p of zoneAccounts.problems) rt.log.warn({ user: p.user, problem: p.problem }, 'dfs: a user record cannot be read; that user\'s home folders are left as they are');
      for (const v of volumes.all()) {
        if (v.role !== 'primary') continue;
        const r = syncHomes(v.meta, zoneAccounts);
        for (const x of r.retired) rt.log.info({ volume: v.name, user: x.user, to: x.to }, 'dfs: the account is gone; set aside what the volume kept for it');
        for (const x of r.failed) rt.log.warn({ volume: v.name, user: x.user, err: x.error }, 'dfs: bringing a home folder in line with its account failed; retrying');
      }
    } catch (err) {
      rt.log.warn({ err: (err as Error).message }, 'dfs: reading the zone\'s accounts for home folders failed; retrying');
    }
  };
  await homes();
  const homeTimer = setInterval(() => void homes(), 5000);
  const sweeper = setInterval(() => uploads.sweep(), 3600_000).unref();
  scrubber.run();
  collector.run();

  const server = await listen(
    createHttpApp({
      name: 'dfs',
      endpoints: [endpoint],
      fallback: http.handle,
      health: () => ({ disks: disks.open().length, volumes: volumes.all().length }),
    }),
    port,
    rt.config.service_host,
  );
  // Uploads and downloads of large files run as long as the link needs; the part size bounds each request instead.
  // A connection on which nothing moves for IDLE_SOCKET_MS is closed, though: a client that vanished (a laptop
  // asleep, a Wi-Fi change) would otherwise hold its request, and an upload's part lock, for good.
  server.server.requestTimeout = 0;
  server.server.timeout = IDLE_SOCKET_MS;
  // WebDAV and NDN for the home network, straight from the node that holds the data (docs/dcfs.md, "LAN access").
  // A port that cannot be bound leaves the node's storage serving through the gateway while the bind is retried.
  const lanServer = createServer(http.lanHandle);
  lanServer.on('checkContinue', (req, res) => {
    continueWhenRead(req, res);
    void http.lanHandle(req, res);
  });
  lanServer.requestTimeout = 0;
  lanServer.timeout = IDLE_SOCKET_MS;
  lanServer.keepAliveTimeout = server.server.keepAliveTimeout;
  lanServer.headersTimeout = server.server.headersTimeout;
  const lan = listenRetrying(lanServer, { host: rt.config.files_host, port: rt.config.ports.files, what: 'dfs LAN listener (WebDAV, NDN)', log: rt.log });
  const hashing = hashEngine();
  if (hashing.engine === 'js') rt.log.warn({ reason: hashing.reason }, 'dfs: the native hashing addon is not loaded; chunking and hashing run in JavaScript on the event loop');
  rt.log.info(
    { port: server.port, hashing: hashing.engine, disks: disks.open().length, volumes: volumes.all().map((v) => `${v.name}:${v.role}`) },
    'dfs listening',
  );
  return {
    async close() {
      stop.abort();
      clearInterval(reporter);
      clearInterval(homeTimer);
      clearTimeout(soon);
      clearInterval(sweeper);
      scrubber.stop();
      collector.stop();
      await Promise.all([server.close(), lan.close()]);
      volumes.close();
      await disks.close();
    },
  };
}
