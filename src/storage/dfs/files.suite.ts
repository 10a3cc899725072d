// A dfs node's file layer for tests, made of the real parts: one disk (a chunk store in a temporary directory), the
// volume `home` held here as primary, chunk placement and I/O, and the RBAC enforcer with the base policy and a tail
// the test gives. Nothing reaches the network: every chunk lives on this node's one disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Principal } from '../../lib/krpc/index.ts';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import { ChunkIO } from './chunk-io.ts';
import { DiskSet } from './disks.ts';
import { Files } from './files.ts';
import { PeerChunks } from './peers.ts';
import type { VolumeMeta } from './volume-meta.ts';
import { VolumeSet, type VolumeSetOptions } from './volumes.ts';
import type { ZoneStorage } from './zone-view.ts';

export const NODE = 'st1';
export const VOLUME = 'home';

export interface TestFiles {
  files: Files;
  meta: VolumeMeta;
  rbac: Rbac;
  disks: DiskSet;
  volumes: VolumeSet;
  zone: () => ZoneStorage;
  io: ChunkIO;
  dir: string;
  close(): Promise<void>;
}

/** A session of `user` through `app`. */
export function session(user: string, app: string): Principal {
  return { userId: user, appId: app, kind: 'session', expiresAt: 0 };
}

export async function openTestFiles(tail: string, volumeOptions: VolumeSetOptions = {}): Promise<TestFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'dfs-files-'));
  const log = pino({ level: 'silent' });
  const record: VolumeRecord = { primary: NODE, followers: [], policy: { copies: 1, failure_domain: 'disk' }, folders: {}, keep_versions: 10, created_at: 1 };
  const disk = { path: join(dir, 'd1'), state: 'active' as const, added_at: 1 };
  const storage: ZoneStorage = {
    disks: [{ node: NODE, disk: 'd1', record: disk }],
    volumes: new Map([[VOLUME, record]]),
    live: new Set([NODE]),
    reported: new Map(),
    problems: [],
  };
  const zone = () => storage;
  // Never asked: the zone has no other node.
  const peers = new PeerChunks({ gatewayUrl: 'http://127.0.0.1:9', token: async () => 'unused' });
  const disks = new DiskSet(log);
  await disks.sync(new Map([['d1', disk]]));
  const volumes = new VolumeSet(NODE, join(dir, 'data'), peers, log, volumeOptions);
  volumes.sync(storage.volumes);
  const io = new ChunkIO(NODE, disks, peers, zone);
  const rbac = await Rbac.create(tail);
  const files = new Files({ self: NODE, volumes, io, zone, rbac });
  return {
    files,
    meta: volumes.get(VOLUME)!.meta,
    rbac,
    disks,
    volumes,
    zone,
    io,
    dir,
    async close() {
      volumes.close();
      await disks.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
