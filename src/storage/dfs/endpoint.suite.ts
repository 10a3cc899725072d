// The dfs service's two faces on a node's test file layer (files.suite.ts): its kRPC endpoint and its HTTP routes,
// as main.ts wires them, with `authenticate` standing in for verify-hub (which the tests using this are not about).
import { join } from 'node:path';
import pino from 'pino';
import type { Principal } from '../../lib/krpc/index.ts';
import { NODE, type TestFiles, VOLUME } from './files.suite.ts';
import { Collector, fileMarks, localLivePage } from './gc.ts';
import { DfsHttp } from './http.ts';
import { Scrubber } from './scrub.ts';
import { createDfsEndpoint } from './service.ts';
import { Uploads } from './uploads.ts';

export function dfsFaces(t: TestFiles, authenticate: (token: string) => Promise<Principal>) {
  const log = pino({ level: 'silent' });
  const uploads = new Uploads(join(t.dir, 'uploads'));
  const common = { self: NODE, gatewayUrl: 'http://127.0.0.1:9', files: t.files, uploads, disks: t.disks, volumes: t.volumes, authenticate, log };
  const http = new DfsHttp({ ...common, io: t.io, basicLogin: () => Promise.reject(new Error('unused')), basicRefresh: () => Promise.reject(new Error('unused')) });
  const endpoint = createDfsEndpoint({
    ...common,
    zone: t.zone,
    scrubber: new Scrubber(t.disks, t.io, t.volumes, t.zone, log),
    collector: new Collector({
      disks: () => t.disks.open(),
      volumes: async () => [{ name: VOLUME, primary: NODE, created_at: 1 }],
      page: async (volume, _primary, after, limit) => localLivePage(t.volumes, t.files, volume, after, limit),
      marks: fileMarks(join(t.dir, 'gc-marks.json')),
      log,
    }),
    roleOf: async () => 'user',
  });
  return { endpoint, http, uploads };
}
