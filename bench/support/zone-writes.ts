// Runs inside a zone device's network namespace for bench/zone-etcd-writes.ts: closed-loop writes through the device's
// own system-config (kRPC, with RBAC, on the zone's etcd cluster) and, alternating with them, through a plain etcd3
// client on the same cluster with the device's TLS certificate. Prints one JSON line with both results.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { systemConfigApi } from '../../src/lib/api/system-config.ts';
import { loadNodeConfig, nodePaths } from '../../src/lib/config/node-config.ts';
import { didDev, loadKeyFile } from '../../src/lib/identity/keys.ts';
import { signAccessToken } from '../../src/lib/identity/tokens.ts';
import { createClient } from '../../src/lib/krpc/index.ts';
import { closedLoop, summarize, type LoadSample } from './measure.ts';

const { root, phaseMs, rounds, concurrency } = JSON.parse(process.argv[2]!) as { root: string; phaseMs: number; rounds: number; concurrency: number };
const paths = nodePaths(root);
const cfg = loadNodeConfig(paths);
const backend = cfg.config_backend;
if (backend?.type !== 'etcd' || !backend.tls) throw new Error(`${root} is not on etcd with TLS`);
const kp = loadKeyFile(join(paths.etc, 'device_key.pem'));
const token = await signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'buckyos-cli', jti: randomUUID() }, kp.privateKey, 3600, didDev(kp.publicKeyB64));
const krpc = createClient(systemConfigApi, { baseUrl: `http://127.0.0.1:${cfg.ports.system_config}`, token });
const etcd = new Etcd3({
  hosts: backend.endpoints,
  credentials: { rootCertificate: readFileSync(backend.tls.ca), certChain: readFileSync(backend.tls.cert), privateKey: readFileSync(backend.tls.key) },
});
const value = (seq: number) => JSON.stringify({ theme: 'dark', lang: 'en', layout: 'grid', seq, note: 'x'.repeat(120) });
const sides: Record<'krpc' | 'raw', (seq: number) => Promise<unknown>> = {
  krpc: (seq) => krpc.set({ key: `bench/zone/k${seq % 1000}`, value: value(seq) }),
  raw: (seq) => etcd.put(`/bench-raw/k${seq % 1000}`).value(value(seq)).exec(),
};
const samples: Record<'krpc' | 'raw', LoadSample[]> = { krpc: [], raw: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? (['raw', 'krpc'] as const) : (['krpc', 'raw'] as const);
  for (const side of order) {
    await closedLoop((seq) => sides[side](seq), { concurrency, durationMs: 500 });
    samples[side].push(await closedLoop((seq) => sides[side](seq), { concurrency, durationMs: phaseMs }));
  }
}
etcd.close();
console.log(JSON.stringify({ krpc: summarize(samples.krpc), raw: summarize(samples.raw) }));
process.exit(0);
