// Dropping a copy of a chunk on two nodes at once (chunk-io.ts dropIfCovered), made of the real parts: each node's
// chunk stores, ChunkIO and DfsHttp, reaching the other through PeerChunks over HTTP, as through the gateway.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { type Server, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { NODE_HEADER, type Principal } from '../../lib/krpc/index.ts';
import type { DiskRecord, PlacementPolicy } from '../../lib/config/storage-records.ts';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import { ChunkIO } from './chunk-io.ts';
import { DiskSet } from './disks.ts';
import { Files } from './files.ts';
import { DfsHttp } from './http.ts';
import { PeerChunks } from './peers.ts';
import type { DiskRef } from './placement.ts';
import { Uploads } from './uploads.ts';
import { VolumeSet } from './volumes.ts';
import type { ZoneStorage } from './zone-view.ts';

const log = pino({ level: 'silent' });
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const TWO_DISKS: PlacementPolicy = { copies: 2, failure_domain: 'disk' };
// Another dfs instance's token; verify-hub's part, which this test is not about.
const authenticate = async (token: string): Promise<Principal> => {
  if (token !== 'dfs') throw new Error('unknown token');
  return { userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0 };
};

interface Node {
  name: string;
  disks: DiskSet;
  io: ChunkIO;
  http: DfsHttp;
  volumes: VolumeSet;
}

describe('dropping copies of one chunk on two nodes at once (ChunkIO.dropIfCovered)', () => {
  let dir: string;
  let gateway: Server;
  let gatewayUrl: string;
  const nodes = new Map<string, Node>();
  // st1 holds disks a and x, st2 disk b: a chunk on all three has one copy more than two-disk policy asks for.
  const layout: Record<string, string[]> = { st1: ['a', 'x'], st2: ['b'] };
  const storage: ZoneStorage = { disks: [], volumes: new Map(), live: new Set(Object.keys(layout)), reported: new Map(), problems: [] };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dfs-chunk-io-'));
    // What the gateway does for dfs: the request goes to the instance the node header names.
    gateway = createServer((req, res) => {
      const node = nodes.get(String(req.headers[NODE_HEADER]));
      const url = new URL(req.url!, 'http://gateway');
      if (!node) {
        res.writeHead(502).end();
        return;
      }
      void node.http.handle(req, res, url);
    });
    gateway.listen(0, '127.0.0.1');
    await once(gateway, 'listening');
    gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const records = new Map<string, Map<string, DiskRecord>>();
    for (const [name, ids] of Object.entries(layout)) {
      mkdirSync(join(dir, name));
      const mine = new Map(ids.map((id) => [id, { path: join(dir, name, id), state: 'active' as const, added_at: 1 }]));
      records.set(name, mine);
      for (const [id, record] of mine) storage.disks.push({ node: name, disk: id, record });
    }
    for (const [name, mine] of records) {
      const disks = new DiskSet(log);
      await disks.sync(mine);
      const peers = new PeerChunks({ gatewayUrl, token: async () => 'dfs' });
      const volumes = new VolumeSet(name, join(dir, name, 'data'), peers, log);
      const io = new ChunkIO(name, disks, peers, () => storage);
      const files = new Files({ self: name, volumes, io, zone: () => storage, rbac: await Rbac.create('') });
      const http = new DfsHttp({
        self: name, gatewayUrl, files, uploads: new Uploads(join(dir, name, 'uploads')), disks, volumes, io,
        authenticate,
        basicLogin: () => Promise.reject(new Error('unused')),
        basicRefresh: () => Promise.reject(new Error('unused')),
        log,
      });
      nodes.set(name, { name, disks, io, http, volumes });
      storage.reported.set(name, await disks.report());
    }
  });

  after(async () => {
    for (const n of nodes.values()) {
      n.volumes.close();
      await n.disks.close();
    }
    gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const node = (name: string) => nodes.get(name)!;
  const store = (r: DiskRef) => node(r.node).disks.get(r.disk)!.store!;

  async function chunkOn(refs: DiskRef[]): Promise<string> {
    const data = randomBytes(10_000);
    for (const r of refs) await store(r).put(sha(data), data);
    return sha(data);
  }

  const held = (id: string): string[] =>
    [...nodes.values()].flatMap((n) => n.disks.open().filter((d) => d.store.has(id)).map((d) => `${n.name}/${d.id}`));

  it('of two copies dropped at once, each counting the other, one stays: the policy holds', async () => {
    for (let round = 0; round < 10; round++) {
      const id = await chunkOn([{ node: 'st1', disk: 'a' }, { node: 'st2', disk: 'b' }, { node: 'st1', disk: 'x' }]);
      // Two primaries moving the chunk onto x, one from a, the other from b: each asks the source's node to drop it.
      const dropped = await Promise.all([
        node('st2').io.dropIfCovered({ node: 'st1', disk: 'a' }, id, TWO_DISKS),
        node('st1').io.dropIfCovered({ node: 'st2', disk: 'b' }, id, TWO_DISKS),
      ]);
      assert.ok(dropped.filter(Boolean).length <= 1, `round ${round}: both copies went (${held(id).join(', ')} left)`);
      assert.ok(held(id).length >= 2, `round ${round}: the chunk is left on ${held(id).join(', ')}`);
    }
  });

  it('drops a copy the others cover, and keeps one they do not, locally and through a peer', async () => {
    const id = await chunkOn([{ node: 'st1', disk: 'a' }, { node: 'st2', disk: 'b' }, { node: 'st1', disk: 'x' }]);
    assert.equal(await node('st1').io.dropIfCovered({ node: 'st2', disk: 'b' }, id, TWO_DISKS), true);
    assert.deepEqual(held(id), ['st1/a', 'st1/x']);
    assert.equal(await node('st2').io.dropIfCovered({ node: 'st1', disk: 'a' }, id, TWO_DISKS), false, 'x alone would be one copy');
    assert.equal(await node('st1').io.dropIfCovered({ node: 'st1', disk: 'a' }, id, { copies: 2, failure_domain: 'node' }), false, 'x shares a node with a');
    assert.equal(await node('st1').io.dropIfCovered({ node: 'st1', disk: 'a' }, id, { copies: 1, failure_domain: 'node' }), true);
    assert.deepEqual(held(id), ['st1/x']);
  });

  it('refuses a drop that does not say what the other copies must meet', async () => {
    const id = await chunkOn([{ node: 'st2', disk: 'b' }]);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${gatewayUrl}/kapi/dfs/chunks/b/${id}`, { method: 'DELETE', headers: { [NODE_HEADER]: 'st2', authorization: 'Bearer dfs' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 400);
    assert.deepEqual(held(id), ['st2/b']);
  });
});
