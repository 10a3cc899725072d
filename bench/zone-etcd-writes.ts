// system-config write throughput on a real three-device zone after it moved to etcd, against a plain etcd client on the
// same cluster, in one run (issue: at least 0.5). Each device is in its own network namespace (test/support/netns.ts),
// the cluster runs peer and client TLS from device keys, and both load generators run on the first device: the kRPC
// side through that device's system-config (token check, RBAC, then etcd), the raw side straight to the members.
import { REPO } from '../test/support/zone.ts';
import { netnsUnavailableReason, startNet } from '../test/support/netns.ts';
import { type TestDevice, activateFirst, destroyDevice, joinDevice, startDevice } from '../test/support/devices.ts';
import type { LoadResult } from './support/measure.ts';
import { fmt, machineLine, table } from './support/measure.ts';

const TARGET = 0.5;
const CONCURRENCY = 32;

async function waitForEtcd(dev: TestDevice): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const r = await dev.tryCli(['zone', 'store', '--json']);
    if (r.code === 0) {
      const s = JSON.parse(r.stdout) as { backend: string; cluster: { healthy: number } | null };
      if (s.backend === 'etcd' && s.cluster?.healthy === 3) return;
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
  throw new Error('the zone did not move to a healthy 3-member etcd cluster within 300 s');
}

export async function main(): Promise<void> {
  const why = netnsUnavailableReason();
  if (why) throw new Error(`this benchmark needs network namespaces: ${why}`);
  console.log(machineLine());
  const net = await startNet({ devices: [{ name: 'ood1' }, { name: 'ood2' }, { name: 'ood3' }] });
  const devices: TestDevice[] = [];
  try {
    devices.push(...(await Promise.all(['ood1', 'ood2', 'ood3'].map((n) => startDevice(net, n)))));
    const [ood1, ood2, ood3] = devices as [TestDevice, TestDevice, TestDevice];
    await activateFirst(ood1, 'bench.example.com');
    await joinDevice(ood1, ood2, 'core');
    await joinDevice(ood1, ood3, 'core');
    console.log('three core devices joined; waiting for the zone store to move to etcd');
    await waitForEtcd(ood1);
    // Both sides need ood1's own system-config instance on the cluster, which it runs once the move is done.
    await ood1.waitFor((s) => s.state === 'running' && s.children.some((c) => c.name === 'system-config' && c.healthy), 120_000, 'ood1 on etcd');
    const out = await net.exec('ood1', process.execPath, ['--import', 'tsx', `${REPO}/bench/support/zone-writes.ts`, JSON.stringify({ root: ood1.root, phaseMs: 4000, rounds: 3, concurrency: CONCURRENCY })], { timeoutMs: 300_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { krpc: LoadResult; raw: LoadResult };
    console.log(table(['path', 'writes/s', 'p50 ms', 'p99 ms'], [
      ['raw etcd3 client (TLS)', fmt(r.raw.opsPerSec), fmt(r.raw.p50Ms, 2), fmt(r.raw.p99Ms, 2)],
      ['kRPC system-config', fmt(r.krpc.opsPerSec), fmt(r.krpc.p50Ms, 2), fmt(r.krpc.p99Ms, 2)],
    ]));
    const ratio = r.krpc.opsPerSec / r.raw.opsPerSec;
    console.log(`three-device etcd zone, ${CONCURRENCY} writers: kRPC/raw write ratio: ${ratio.toFixed(2)} (target >= ${TARGET})`);
  } finally {
    await Promise.all(devices.map(destroyDevice));
    await net.destroy();
  }
}
