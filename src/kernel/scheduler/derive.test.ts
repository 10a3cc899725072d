// The scheduler as tables: placement by role, resources and specs; the single-device zone; a dead node's services
// moved within two heartbeat windows; no-op ticks; conflicting writes; the RBAC tail for installed apps. derive() is
// tested as the pure function it is; the tick loop (Scheduler) runs against an in-memory store with real revisions
// and compare-and-swap, so "no write" and "lost race" are observed, not assumed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { systemConfigApi } from '../../lib/api/system-config.ts';
import { KERNEL_SERVICE_PORTS, type KernelServiceName, OPT_IN_KERNEL_SERVICES } from '../../lib/config/node-config.ts';
import type { ServiceSpec } from '../../lib/config/zone-records.ts';
import { DOCUMENT_LIFETIME_SEC, type DeviceRole, type ZoneBootConfig, signDocument } from '../../lib/identity/documents.ts';
import { type KeyPair, generateKeyPair } from '../../lib/identity/keys.ts';
import { type CallContext, type Client, type ParamsIn, type Principal, KrpcError } from '../../lib/krpc/index.ts';
import { RBAC_TAIL_KEY } from '../../lib/rbac/config-sync.ts';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import {
  DEAD_AFTER_MS,
  type DeviceInput,
  type InstalledApp,
  type InstanceInput,
  type SchedulerInput,
  type SchedulerOutput,
  derive,
  isOwnedKey,
  planWrites,
  storeTime,
} from './derive.ts';
import { createAuthorize } from './main.ts';
import { Scheduler, TICK_INTERVAL_MS } from './scheduler.ts';

const T0 = 1_750_000_000_000;
const GiB = 1024 ** 3;
// Opt-in services (ns) run nowhere until a spec places them, so the kernel a node runs by default leaves them out.
const KERNEL = Object.keys(KERNEL_SERVICE_PORTS).filter((s) => !OPT_IN_KERNEL_SERVICES.has(s as KernelServiceName));
const PORTS: Record<string, number> = { 'system-config': 3200, 'verify-hub': 3300, klog: 3500, scheduler: 3400, gateway: 3180, share: 8000, index: 8100 };

const device = (role: DeviceRole, n: number, memory = 8 * GiB): DeviceInput => ({ role, memory_bytes: memory, ipv4: `10.0.0.${n}` });

function beat(service: string, node: string, at: number, over: Partial<InstanceInput> = {}): InstanceInput {
  return { service, node, port: PORTS[service] ?? 9000, state: 'running', healthy: true, heartbeat_at: at, ...over };
}

function world(over: Partial<SchedulerInput>): SchedulerInput {
  return { devices: {}, instances: [], specs: {}, apps: [], current: {}, ...over };
}

/** Heartbeats of every service the output places on `nodes`, as their node_daemons would report them at `at`. */
function beatsFor(out: SchedulerOutput, nodes: readonly string[], at: number): InstanceInput[] {
  return Object.entries(out.placement).flatMap(([s, on]) => on.filter((n) => nodes.includes(n)).map((n) => beat(s, n, at)));
}

/** The world after the output was written: the owned keys hold what derive asked for. */
function written(input: SchedulerInput, out: SchedulerOutput): SchedulerInput {
  return { ...input, current: { ...out.keys } };
}

const runConfig = (out: SchedulerOutput, node: string) => JSON.parse(out.keys[`nodes/${node}/config`]) as { kernel: string[]; apps: string[] };
const info = (out: SchedulerOutput, service: string) =>
  JSON.parse(out.keys[`services/${service}/info`]) as { instances: { node: string; host: string; port: number; state: string }[]; updated_at: number };

describe('derive: placement', () => {
  const ALL = KERNEL;
  const GATEWAY_ONLY = { kernel: ['gateway'], apps: [] };
  const rows: {
    name: string;
    devices: Record<string, DeviceInput>;
    specs?: Record<string, ServiceSpec>;
    expect: Record<string, { kernel: string[]; apps: string[] }>;
    problems?: RegExp[];
  }[] = [
    {
      name: 'a core node runs the whole kernel, in boot order',
      devices: { c1: device('core', 1) },
      expect: { c1: { kernel: ALL, apps: [] } },
    },
    {
      name: 'storage, portable and gateway nodes run only the gateway',
      devices: { c1: device('core', 1), s1: device('storage', 2), p1: device('portable', 3), g1: device('gateway', 4) },
      expect: { c1: { kernel: ALL, apps: [] }, s1: GATEWAY_ONLY, p1: GATEWAY_ONLY, g1: GATEWAY_ONLY },
    },
    {
      name: 'every core node runs the control plane',
      devices: { c1: device('core', 1), c2: device('core', 2), c3: device('core', 3) },
      expect: { c1: { kernel: ALL, apps: [] }, c2: { kernel: ALL, apps: [] }, c3: { kernel: ALL, apps: [] } },
    },
    {
      name: 'a spec places an app by role and memory',
      devices: { c1: device('core', 1, 64 * GiB), s1: device('storage', 2, 2 * GiB), s2: device('storage', 3, 8 * GiB) },
      specs: { share: { replicas: 1, roles: ['storage'], min_memory_bytes: 4 * GiB } },
      expect: { c1: { kernel: ALL, apps: [] }, s1: GATEWAY_ONLY, s2: { kernel: ['gateway'], apps: ['share'] } },
    },
    {
      name: 'counted replicas go to the least loaded nodes, then the most memory, then by name',
      devices: { s1: device('storage', 1), s2: device('storage', 2), s3: device('storage', 3, 16 * GiB), c1: device('core', 4) },
      specs: { aa: { replicas: 2, roles: ['storage'] }, bb: { replicas: 2, roles: ['storage'] } },
      expect: {
        c1: { kernel: ALL, apps: [] },
        s1: { kernel: ['gateway'], apps: ['aa'] },
        s2: { kernel: ['gateway'], apps: ['bb'] },
        s3: { kernel: ['gateway'], apps: ['aa', 'bb'] },
      },
    },
    {
      name: 'a spec for a kernel service narrows where it runs',
      devices: { c1: device('core', 1), c2: device('core', 2) },
      specs: { klog: { replicas: 1, roles: ['core'] }, 'verify-hub': { replicas: 1, roles: ['core'] } },
      expect: {
        c1: { kernel: ['system-config', 'klog', 'scheduler', 'gateway'], apps: [] },
        c2: { kernel: ['system-config', 'verify-hub', 'scheduler', 'gateway'], apps: [] },
      },
    },
    {
      name: 'verify-hub cannot be given zero instances: nobody could log in to undo it',
      devices: { c1: device('core', 1) },
      specs: { 'verify-hub': { replicas: 0, roles: ['core'] } },
      expect: { c1: { kernel: ALL, apps: [] } },
      problems: [/verify-hub\/spec is ignored: verify-hub needs at least one instance/],
    },
    {
      name: 'verify-hub and klog go to core devices only, ns to core and gateway ones: elsewhere the device side leaves them unable to work',
      devices: { c1: device('core', 1), s1: device('storage', 2), g1: device('gateway', 3) },
      specs: {
        'verify-hub': { replicas: 'all', roles: ['core', 'storage'] },
        klog: { replicas: 1, roles: ['storage'] },
        ns: { replicas: 'all', roles: ['gateway', 'portable'] },
      },
      expect: { c1: { kernel: ALL, apps: [] }, s1: { kernel: ['gateway'], apps: [] }, g1: { kernel: ['gateway', 'ns'], apps: [] } },
      problems: [
        /^services\/klog\/spec: klog works only on core devices; storage named alone: the spec is ignored$/,
        /^services\/ns\/spec: ns works only on core or gateway devices; portable left out$/,
        /^services\/verify-hub\/spec: verify-hub works only on core devices; storage left out$/,
      ],
    },
    {
      name: 'the gateway, system-config and the scheduler cannot be moved by a spec',
      devices: { c1: device('core', 1) },
      specs: { gateway: { replicas: 0, roles: ['core'] }, scheduler: { replicas: 0, roles: ['core'] } },
      expect: { c1: { kernel: ALL, apps: [] } },
      problems: [/^services\/gateway\/spec is ignored/, /^services\/scheduler\/spec is ignored/],
    },
    {
      name: 'more replicas than eligible nodes places what it can and says so',
      devices: { c1: device('core', 1), s1: device('storage', 2) },
      specs: { share: { replicas: 3, roles: ['storage'] }, index: { replicas: 'all', roles: ['portable'] } },
      expect: { c1: { kernel: ALL, apps: [] }, s1: { kernel: ['gateway'], apps: ['share'] } },
      problems: [/^index: no node has one of the roles portable/, /^share: 3 replicas wanted, 1 eligible/],
    },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const out = derive(world({ devices: row.devices, specs: row.specs ?? {} }), T0);
      for (const [node, want] of Object.entries(row.expect)) assert.deepEqual(runConfig(out, node), want, node);
      assert.deepEqual(
        Object.keys(out.keys).filter((k) => k.startsWith('nodes/')),
        Object.keys(row.expect).sort().map((n) => `nodes/${n}/config`),
      );
      assert.equal(out.problems.length, (row.problems ?? []).length, out.problems.join('\n'));
      (row.problems ?? []).forEach((re, i) => assert.match(out.problems[i], re));
    });
  }

  it('keeps a counted service where it runs rather than moving it to a better node', () => {
    const devices = { s1: device('storage', 1, 2 * GiB), s2: device('storage', 2, 32 * GiB) };
    const specs: Record<string, ServiceSpec> = { share: { replicas: 1, roles: ['storage'] } };
    const current = { 'nodes/s1/config': JSON.stringify({ kernel: ['gateway'], apps: ['share'] }) };
    const out = derive(world({ devices, specs, current, instances: [beat('share', 's1', T0), beat('gateway', 's2', T0)] }), T0);
    assert.deepEqual(out.placement.share, ['s1']);
  });
});

describe('derive: a single-device zone', () => {
  const devices = { ood1: device('core', 1) };
  const seeded = { 'nodes/ood1/config': JSON.stringify({ kernel: KERNEL, apps: [] }) };

  it('derives the run config node_daemon seeds, routes on loopback, and an empty tail', () => {
    const instances = KERNEL.map((s) => beat(s, 'ood1', T0 - 1000));
    const out = derive(world({ devices, instances, current: seeded }), T0);
    assert.equal(out.keys['nodes/ood1/config'], seeded['nodes/ood1/config'], 'byte-identical to the seed: the first tick writes no run config');
    for (const s of KERNEL) {
      assert.deepEqual(info(out, s), { instances: [{ node: 'ood1', host: '127.0.0.1', port: PORTS[s], state: 'running' }], updated_at: T0 });
    }
    assert.deepEqual(Object.keys(out.keys).filter((k) => k.startsWith('services/')), KERNEL.map((s) => `services/${s}/info`).sort());
    assert.match(out.keys[RBAC_TAIL_KEY], /^# Generated by the scheduler/);
    assert.equal(out.keys[RBAC_TAIL_KEY].split('\n').filter((l) => l && !l.startsWith('#')).length, 0);
    assert.deepEqual(out.problems, []);
  });

  const states: { name: string; beat: Partial<InstanceInput>; age: number; want: string }[] = [
    { name: 'healthy', beat: {}, age: 1000, want: 'running' },
    { name: 'starting, not yet healthy', beat: { state: 'starting', healthy: false }, age: 1000, want: 'starting' },
    { name: 'in restart back-off', beat: { state: 'backoff', healthy: false }, age: 1000, want: 'starting' },
    { name: 'stopped', beat: { state: 'stopped', healthy: false }, age: 1000, want: 'dead' },
    { name: 'silent exactly 90 s', beat: {}, age: DEAD_AFTER_MS, want: 'running' },
    { name: 'silent over 90 s', beat: {}, age: DEAD_AFTER_MS + 1, want: 'dead' },
  ];
  for (const row of states) {
    it(`lists an instance that is ${row.name} as ${row.want}`, () => {
      const out = derive(world({ devices, instances: [beat('klog', 'ood1', T0 - row.age, row.beat)] }), T0);
      assert.equal(info(out, 'klog').instances[0].state, row.want);
    });
  }

  it('decides nothing, and so deletes nothing, without a verified device', () => {
    const current = { ...seeded, 'services/klog/info': '{"instances":[],"updated_at":1}' };
    const out = derive(world({ current, instances: [beat('klog', 'ood1', T0)] }), T0);
    assert.deepEqual(out.keys, current);
    assert.deepEqual(planWrites(Object.fromEntries(Object.entries(current).map(([k, v]) => [k, { value: v, revision: 3 }])), out).ops, []);
    assert.match(out.problems[0], /no device/);
  });
});

describe('storeTime', () => {
  it('is the newest heartbeat, whatever the deciding clock says, but never one stamped over 15 s ahead of it', () => {
    const beats = [beat('gateway', 'c1', T0 - 5_000), beat('gateway', 's1', T0 - 95_000)];
    assert.equal(storeTime(beats, T0), T0 - 5_000);
    assert.equal(storeTime(beats, T0 + 3_000), T0 - 5_000, 'a clock 3 s ahead judges by the same time');
    assert.equal(storeTime([...beats, beat('gateway', 's2', T0 + 3_600_000)], T0), T0 - 5_000, 'a node an hour ahead is not believed');
    assert.equal(storeTime([...beats, beat('gateway', 's2', T0 + 20_000)], T0), T0 - 5_000, 'nor one 20 s ahead, which would age every other node by as much');
    assert.equal(storeTime([], T0), T0);
  });

  it('makes two schedulers whose clocks differ by seconds derive the same output near the 90 s mark', () => {
    const devices = { c1: device('core', 1), s1: device('storage', 2), s2: device('storage', 3) };
    const specs: Record<string, ServiceSpec> = { share: { replicas: 1, roles: ['storage'] } };
    const first = derive(world({ devices, specs }), T0);
    // s1 last reported 89 s before the others' newest heartbeat: dead by a clock 3 s ahead, live by the store's time.
    const input = written(world({ devices, specs, instances: [...beatsFor(first, ['c1', 's2'], T0 + 89_000), ...beatsFor(first, ['s1'], T0)] }), first);
    const mine = derive(input, storeTime(input.instances, T0 + 89_000));
    const ahead = derive(input, storeTime(input.instances, T0 + 92_000));
    assert.deepEqual(ahead, mine);
    assert.deepEqual(mine.placement.share, ['s1']);
    assert.notDeepEqual(derive(input, T0 + 92_000).placement.share, ['s1'], 'by its own clock the one ahead would have moved share');
  });
});

describe('derive: dead nodes', () => {
  const HEARTBEAT_MS = 10_000;
  const devices = { c1: device('core', 1), s1: device('storage', 2), s2: device('storage', 3) };
  const specs: Record<string, ServiceSpec> = { share: { replicas: 1, roles: ['storage'] } };

  /** Ticks every heartbeat window from `from`, every node but `silent` reporting what it was told to run, and the
   * output written back each time, as the running scheduler does. Returns the first tick that placed share away
   * from `silent`, and the last output. */
  function runUntilMoved(start: SchedulerInput, silent: string, from: number, ticks: number) {
    let input = start;
    let out = derive(input, from);
    for (let t = from; t <= from + ticks * HEARTBEAT_MS; t += HEARTBEAT_MS) {
      const alive = Object.keys(devices).filter((n) => n !== silent);
      const stale = input.instances.filter((i) => i.node === silent);
      input = written({ ...input, instances: [...stale, ...beatsFor(out, alive, t)] }, out);
      out = derive(input, t);
      if (!out.placement.share.includes(silent)) return { movedAt: t, out, input };
    }
    return { movedAt: null, out, input };
  }

  it('moves a counted service off a node silent for 90 s within two heartbeat windows, and not before', () => {
    const first = derive(world({ devices, specs }), T0);
    assert.deepEqual(first.placement.share, ['s1']);
    const lastBeat = T0;
    const running = world({ devices, specs, current: { ...first.keys }, instances: beatsFor(first, Object.keys(devices), lastBeat) });
    const { movedAt, out, input } = runUntilMoved(running, 's1', lastBeat + HEARTBEAT_MS, 20);
    assert.ok(movedAt !== null, 'share was moved');
    assert.ok(movedAt - lastBeat > DEAD_AFTER_MS, `not before the node is dead (moved ${movedAt - lastBeat} ms after its last heartbeat)`);
    assert.ok(movedAt - lastBeat <= DEAD_AFTER_MS + 2 * HEARTBEAT_MS, `within two heartbeat windows of it (moved after ${movedAt - lastBeat} ms)`);
    assert.deepEqual(out.placement.share, ['s2']);
    assert.deepEqual(runConfig(out, 's2'), { kernel: ['gateway'], apps: ['share'] });
    assert.deepEqual(runConfig(out, 's1'), { kernel: ['gateway'], apps: [] }, 'the dead node keeps its run config, less what moved');
    assert.deepEqual(info(out, 'share').instances, [], 'the dead, no longer placed instance is not routed to');
    assert.deepEqual(info(out, 'gateway').instances.map((i) => [i.node, i.state]), [['c1', 'running'], ['s1', 'dead'], ['s2', 'running']]);

    // The new instance reports in; it is routed to on s2's address.
    const next = derive(written({ ...input, instances: [...input.instances, beat('share', 's2', movedAt + 1000)] }, out), movedAt + 2000);
    assert.deepEqual(info(next, 'share').instances, [{ node: 's2', host: '10.0.0.3', port: PORTS.share, state: 'running' }]);
  });

  it('does not move a counted service back to its dead node when the node returns', () => {
    const first = derive(world({ devices, specs }), T0);
    const running = world({ devices, specs, current: { ...first.keys }, instances: beatsFor(first, Object.keys(devices), T0) });
    const { movedAt, out, input } = runUntilMoved(running, 's1', T0 + HEARTBEAT_MS, 20);
    assert.ok(movedAt !== null, 'share was moved');

    // s2 starts share while s1 is still silent; s1's trimmed run config is kept byte for byte from now on.
    let t = movedAt + HEARTBEAT_MS;
    let now = written({ ...input, instances: [...input.instances, beat('share', 's2', t)] }, out);
    let next = derive(now, t);
    assert.deepEqual(next.placement.share, ['s2']);
    assert.equal(next.keys['nodes/s1/config'], out.keys['nodes/s1/config']);

    // s1 is back, still running share as it was told before it went silent: told to stop it, s2 keeps it.
    t += HEARTBEAT_MS;
    now = written({ ...now, instances: [...beatsFor(first, ['s1'], t), ...beatsFor(next, ['c1', 's2'], t)] }, next);
    next = derive(now, t);
    assert.deepEqual(next.placement.share, ['s2']);
    assert.deepEqual(runConfig(next, 's1'), { kernel: ['gateway'], apps: [] });
    assert.deepEqual(runConfig(next, 's2'), { kernel: ['gateway'], apps: ['share'] });
  });

  it('keeps a dead node\'s run config that does not parse as it is', () => {
    const current = { 'nodes/s1/config': 'not json' };
    const out = derive(world({ devices, specs, current, instances: [beat('gateway', 's1', T0 - DEAD_AFTER_MS - 1), beat('gateway', 's2', T0)] }), T0);
    assert.deepEqual(out.placement.share, ['s2']);
    assert.equal(out.keys['nodes/s1/config'], 'not json');
  });

  it('leaves a service on its dead node when no other node may run it', () => {
    const single = { c1: device('core', 1), s1: device('storage', 2) };
    const first = derive(world({ devices: single, specs }), T0);
    const input = world({ devices: single, specs, current: { ...first.keys }, instances: beatsFor(first, ['c1', 's1'], T0) });
    const later = T0 + DEAD_AFTER_MS + 5000;
    const out = derive({ ...input, instances: [...input.instances.filter((i) => i.node === 's1'), ...beatsFor(first, ['c1'], later)] }, later);
    assert.deepEqual(out.placement.share, ['s1']);
    assert.deepEqual(info(out, 'share').instances, [{ node: 's1', host: '10.0.0.2', port: PORTS.share, state: 'dead' }]);
    assert.deepEqual(out.problems, []);
  });

  it('treats a device whose document no longer verifies like a dead one: work moves, its run config stays less what moved, no routes', () => {
    const first = derive(world({ devices, specs }), T0);
    assert.deepEqual(first.placement.share, ['s1']);
    const { s1: _untrusted, ...trusted } = devices;
    const input = world({ devices: trusted, untrusted: ['s1'], specs, current: { ...first.keys }, instances: beatsFor(first, Object.keys(devices), T0) });
    const out = derive(input, T0 + 1000);
    assert.deepEqual(out.placement.share, ['s2'], 'moved at once: the device is not trusted with it');
    assert.deepEqual(runConfig(out, 's1'), { kernel: ['gateway'], apps: [] }, 'its run config is kept, less what moved');
    assert.ok(!info(out, 'gateway').instances.some((i) => i.node === 's1'), 'nothing is routed to it');
    assert.deepEqual(planWrites(Object.fromEntries(Object.entries(out.keys).map(([k, v]) => [k, { value: v, revision: 1 }])), derive(written(input, out), T0 + 2000)).ops, []);
  });

  describe('what an untrusted device keeps of its run config', () => {
    const rows: {
      name: string;
      devices: Record<string, DeviceInput>;
      specs?: Record<string, ServiceSpec>;
      storageNodes?: string[];
      /** s1's run config when its document stopped verifying. */
      kept: string;
      expect: string;
    }[] = [
      {
        name: 'a counted service placed elsewhere meanwhile is struck',
        devices: { c1: device('core', 1), s2: device('storage', 3) },
        specs,
        kept: JSON.stringify({ kernel: ['gateway'], apps: ['share'] }),
        expect: JSON.stringify({ kernel: ['gateway'], apps: [] }),
      },
      {
        name: 'a counted service with nowhere else to go stays',
        devices: { c1: device('core', 1) },
        specs,
        kept: JSON.stringify({ kernel: ['gateway'], apps: ['share'] }),
        expect: JSON.stringify({ kernel: ['gateway'], apps: ['share'] }),
      },
      {
        name: '"all" services stay, though placed only on the trusted devices',
        devices: { c1: device('core', 1), s2: device('storage', 3) },
        specs: { ...specs, index: { replicas: 'all', roles: ['storage'] } },
        kept: JSON.stringify({ kernel: ['gateway'], apps: ['index'] }),
        expect: JSON.stringify({ kernel: ['gateway'], apps: ['index'] }),
      },
      {
        name: 'dfs placed by storage stays',
        devices: { c1: device('core', 1), s2: device('storage', 3) },
        storageNodes: ['s1', 's2'],
        kept: JSON.stringify({ kernel: ['gateway', 'dfs'], apps: [] }),
        expect: JSON.stringify({ kernel: ['gateway', 'dfs'], apps: [] }),
      },
      {
        name: 'a run config that does not parse is kept as it is',
        devices: { c1: device('core', 1), s2: device('storage', 3) },
        specs,
        kept: 'not json',
        expect: 'not json',
      },
    ];
    for (const row of rows) {
      it(row.name, () => {
        const input = world({ devices: row.devices, untrusted: ['s1'], specs: row.specs ?? {}, storageNodes: row.storageNodes, current: { 'nodes/s1/config': row.kept } });
        assert.equal(derive(input, T0).keys['nodes/s1/config'], row.expect);
      });
    }
  });

  it('does not move a counted service back to a device trusted again, though its name comes first', () => {
    const first = derive(world({ devices, specs }), T0);
    assert.deepEqual(first.placement.share, ['s1']);
    // s1's document stops verifying: share goes to s2, which starts it; s1, told nothing new, still runs it.
    const { s1: _untrusted, ...trusted } = devices;
    let t = T0 + 1000;
    let now = world({ devices: trusted, untrusted: ['s1'], specs, current: { ...first.keys }, instances: beatsFor(first, Object.keys(devices), t) });
    let out = derive(now, t);
    assert.deepEqual(out.placement.share, ['s2']);
    t += 10_000;
    now = written({ ...now, instances: [...beatsFor(first, ['s1'], t), ...beatsFor(out, ['c1', 's2'], t)] }, out);
    out = derive(now, t);

    // s1's document verifies again (renewed): s2 keeps share, and s1 is told to stop it.
    t += 10_000;
    now = written({ ...now, devices, untrusted: [], instances: [...beatsFor(first, ['s1'], t), ...beatsFor(out, ['c1', 's2'], t)] }, out);
    out = derive(now, t);
    assert.deepEqual(out.placement.share, ['s2']);
    assert.deepEqual(runConfig(out, 's1'), { kernel: ['gateway'], apps: [] });
    assert.deepEqual(runConfig(out, 's2'), { kernel: ['gateway'], apps: ['share'] });
  });

  it('gives work to a node that never reported, but prefers a live one', () => {
    const fresh = { s1: device('storage', 1, 64 * GiB), s2: device('storage', 2) };
    const out = derive(world({ devices: fresh, specs, instances: [beat('gateway', 's2', T0)] }), T0);
    assert.deepEqual(out.placement.share, ['s2']);
    assert.deepEqual(runConfig(out, 's1'), { kernel: ['gateway'], apps: [] });
  });

  it('takes work back from a node that never reported once a live node can run it', () => {
    // s2 is enrolled but never boots; s3 joins later.
    const before = { c1: device('core', 1), s1: device('storage', 2), s2: device('storage', 3) };
    let t = T0;
    let now = world({ devices: before, specs, instances: [beat('gateway', 'c1', t), beat('gateway', 's1', t)] });
    let out = derive(now, t);
    assert.deepEqual(out.placement.share, ['s1']);

    // s1 dies: share goes to s2, the only node not dead.
    const lastBeat = t;
    t += DEAD_AFTER_MS + HEARTBEAT_MS;
    now = written({ ...now, instances: [...beatsFor(out, ['s1'], lastBeat), ...beatsFor(out, ['c1'], t)] }, out);
    out = derive(now, t);
    assert.deepEqual(out.placement.share, ['s2']);

    // s3 joins and reports: share goes to it, and s2's run config no longer lists it.
    t += HEARTBEAT_MS;
    now = written({ ...now, devices: { ...before, s3: device('storage', 4) }, instances: [...now.instances, beat('gateway', 's3', t)] }, out);
    out = derive(now, t);
    assert.deepEqual(out.placement.share, ['s3']);
    assert.deepEqual(runConfig(out, 's2'), { kernel: ['gateway'], apps: [] });
    assert.deepEqual(runConfig(out, 's3'), { kernel: ['gateway'], apps: ['share'] });
  });

  it('lists instances of a multi-device zone at the node\'s first IPv4 address, and leaves out a node without one', () => {
    const two = { c1: device('core', 1), s1: { role: 'storage' as const, memory_bytes: null, ipv4: null } };
    const out = derive(world({ devices: two, instances: [beat('gateway', 'c1', T0), beat('gateway', 's1', T0), beat('gateway', 'gone', T0)] }), T0);
    assert.deepEqual(info(out, 'gateway').instances, [{ node: 'c1', host: '10.0.0.1', port: PORTS.gateway, state: 'running' }]);
  });
});

describe('derive: no-op ticks', () => {
  const devices = { c1: device('core', 1), s1: device('storage', 2) };
  const specs: Record<string, ServiceSpec> = { share: { replicas: 1, roles: ['storage'] } };
  const apps: InstalledApp[] = [{ user: 'alice', app: 'share', permissions: [{ resource: 'obj://dfs/*/public/**', actions: 'read' }] }];

  it('gives the same input the same output, byte for byte', () => {
    const input = world({ devices, specs, apps, instances: [beat('share', 's1', T0), beat('klog', 'c1', T0 - 200_000)] });
    assert.equal(JSON.stringify(derive(input, T0 + 5)), JSON.stringify(derive(structuredClone(input), T0 + 5)));
  });

  it('plans no write once its output is in place, however the heartbeats tick on', () => {
    const first = derive(world({ devices, specs, apps }), T0);
    const input = world({ devices, specs, apps, current: { ...first.keys }, instances: beatsFor(first, ['c1', 's1'], T0) });
    const settled = derive(input, T0 + 1000);
    const current = Object.fromEntries(Object.entries(settled.keys).map(([k, v]) => [k, { value: v, revision: 7 }]));
    for (const later of [T0 + 11_000, T0 + 21_000, T0 + 31_000]) {
      const out = derive({ ...input, current: { ...settled.keys }, instances: beatsFor(first, ['c1', 's1'], later - 500) }, later);
      assert.deepEqual(planWrites(current, out), { ops: [], compares: [] }, `tick at +${later - T0} ms`);
      assert.equal(JSON.stringify(out.keys), JSON.stringify(settled.keys));
    }
  });

  it('plans puts and deletes of owned keys only, each compared with the revision it was read at', () => {
    const out = derive(world({ devices }), T0);
    const current: Record<string, { value: string; revision: number }> = {
      'nodes/c1/config': { value: out.keys['nodes/c1/config'], revision: 4 },
      'nodes/removed/config': { value: '{"kernel":[],"apps":[]}', revision: 5 },
      'services/old/info': { value: '{"instances":[],"updated_at":1}', revision: 6 },
      [RBAC_TAIL_KEY]: { value: 'stale', revision: 9 },
    };
    const plan = planWrites(current, out);
    assert.deepEqual(plan.ops.map((o) => `${o.op} ${o.key}`), [
      'delete nodes/removed/config',
      'put nodes/s1/config',
      'put services/gateway/info',
      'put services/klog/info',
      'delete services/old/info',
      'put services/scheduler/info',
      'put services/system-config/info',
      'put services/verify-hub/info',
      'put system/rbac/policy',
    ]);
    assert.deepEqual(plan.compares, plan.ops.map((o) => ({ key: o.key, revision: current[o.key]?.revision ?? 0 })));
    assert.ok(plan.ops.every((o) => isOwnedKey(o.key)));
  });
});

describe('derive: the RBAC tail', () => {
  const devices = { c1: device('core', 1) };
  const photos = { resource: 'obj://dfs/*/home/{user}/photos/**', actions: 'read' };

  it('installs each app with g2 and grants what its spec asks, naming the consenting user literally', async () => {
    const apps: InstalledApp[] = [
      { user: 'alice', app: 'share', permissions: [photos, { resource: 'obj://dfs/*/public/**', actions: 'read|write' }] },
      { user: 'bob', app: 'share', permissions: [photos] },
      { user: 'bob', app: 'notes', permissions: [] },
    ];
    const out = derive(world({ devices, apps }), T0);
    assert.deepEqual(out.keys[RBAC_TAIL_KEY].split('\n').filter((l) => l && !l.startsWith('#')), [
      'g2, notes, app',
      'g2, share, app',
      'p2, share, obj://dfs/*/home/alice/photos/**, read',
      'p2, share, obj://dfs/*/home/bob/photos/**, read',
      'p2, share, obj://dfs/*/public/**, read|write',
    ]);
    assert.deepEqual(out.problems, []);

    const rbac = await Rbac.create();
    rbac.loadTail(out.keys[RBAC_TAIL_KEY]);
    for (const u of ['alice', 'bob', 'carol']) rbac.setUserRole(u, 'user');
    const read = (user: string, app: string, path: string) => rbac.check({ user, app, resource: `obj://dfs/main/home/${path}`, action: 'read' });
    assert.equal(read('alice', 'share', 'alice/photos/a.jpg'), true);
    assert.equal(read('bob', 'share', 'bob/photos/b.jpg'), true);
    assert.equal(read('carol', 'share', 'carol/photos/c.jpg'), false, 'carol never let share see her photos');
    assert.equal(read('bob', 'share', 'alice/photos/a.jpg'), false);
    assert.equal(read('alice', 'notes', 'alice/photos/a.jpg'), false);
    assert.equal(read('alice', 'notes', 'alice/apps/notes/db'), true, 'an installed app has its own data folder');
  });

  const refused: { name: string; app: string; resource?: string; actions?: string; why: RegExp }[] = [
    { name: 'an app id of the base policy', app: 'control-panel', why: /not installed: "control-panel" is defined by the base policy/ },
    { name: 'a kernel service as app id', app: 'scheduler', why: /not installed/ },
    { name: 'a role as app id', app: 'kernel', why: /not installed/ },
    { name: 'an app id that is no subject', app: 'share,app', why: /not a valid subject name/ },
    { name: 'a config grant', app: 'share', resource: 'obj://config/users/{user}/**', why: /files \(obj:\/\/dfs\/\.\.\.\) only/ },
    { name: 'a system grant', app: 'share', resource: 'obj://system/**', why: /files/ },
    { name: 'every home', app: 'share', resource: 'obj://dfs/*/home/*/photos/**', why: /must name the installing user/ },
    { name: 'another user\'s home', app: 'share', resource: 'obj://dfs/main/home/carol/**', why: /must name the installing user \(alice\)/ },
    { name: 'a whole volume', app: 'share', resource: 'obj://dfs/main/**', why: /every user's home/ },
    { name: 'all files', app: 'share', resource: 'obj://dfs/**', why: /every user's home/ },
    { name: 'an unknown action', app: 'share', resource: 'obj://dfs/*/public/**', actions: 'read|fly', why: /unknown action "fly"/ },
    { name: 'a wildcard inside a segment', app: 'share', resource: 'obj://dfs/*/public/*.jpg', why: /whole segment/ },
    { name: 'an {app} placeholder standing for a home', app: 'home', resource: 'obj://dfs/*/{app}/*/**', why: /only \{user\} may stand/ },
    { name: 'a line break inside the actions', app: 'share', resource: 'obj://dfs/*/public/**', actions: 'read|\nwrite|', why: /unknown action ""/ },
    { name: 'a line break inside the resource', app: 'share', resource: 'obj://dfs/*/public/**\np2, share, obj://dfs/**', why: /./ },
  ];
  it('writes actions in their canonical spelling', async () => {
    const out = derive(world({ devices, apps: [{ user: 'alice', app: 'share', permissions: [{ resource: 'obj://dfs/*/public/**', actions: ' write | read\n' }] }] }), T0);
    assert.match(out.keys[RBAC_TAIL_KEY], /^p2, share, obj:\/\/dfs\/\*\/public\/\*\*, read\|write$/m);
    (await Rbac.create()).loadTail(out.keys[RBAC_TAIL_KEY]);
  });

  for (const row of refused) {
    it(`refuses ${row.name}, keeps the rest, and says why`, async () => {
      const perms = row.resource ? [{ resource: row.resource, actions: row.actions ?? 'read' }] : [];
      const out = derive(world({ devices, apps: [{ user: 'alice', app: row.app, permissions: perms }, { user: 'alice', app: 'notes', permissions: [] }] }), T0);
      const lines = out.keys[RBAC_TAIL_KEY].split('\n').filter((l) => l && !l.startsWith('#'));
      assert.equal(out.problems.length, 1, out.problems.join('\n'));
      assert.match(out.problems[0], row.why);
      assert.ok(!lines.some((l) => l.startsWith('p2')), lines.join('\n'));
      assert.ok(lines.includes('g2, notes, app'));
      (await Rbac.create()).loadTail(out.keys[RBAC_TAIL_KEY]);
    });
  }
});

// ---- the tick loop against an in-memory store ----------------------------------------------------------------------

type Methods = typeof systemConfigApi.methods;

/** system-config's semantics in memory: one revision counter, per-key revisions, atomic compare-and-swap transactions.
 * `beforeTx` runs just before a transaction is checked: another writer getting in first. */
class MemoryConfig implements Pick<Client<Methods>, 'list' | 'get' | 'exec_tx' | 'watch'> {
  rev = 0;
  readonly data = new Map<string, { value: string; revision: number; create_revision: number }>();
  txs = 0;
  beforeTx: (() => void) | null = null;

  put(key: string, value: string): void {
    this.rev++;
    this.data.set(key, { value, revision: this.rev, create_revision: this.data.get(key)?.create_revision ?? this.rev });
  }

  async list(p: ParamsIn<Methods['list']>) {
    const under = [...this.data].filter(([k]) => k.startsWith(p.prefix)).sort(([a], [b]) => (a < b ? -1 : 1));
    const limit = p.limit ?? 1000;
    const entries = under.slice(0, limit).map(([key, e]) => ({ key, ...e, value: p.keys_only ? '' : e.value }));
    return { entries, revision: this.rev, more: under.length > limit };
  }

  async get(p: ParamsIn<Methods['get']>) {
    const e = this.data.get(p.key);
    return { key: p.key, value: e?.value ?? null, revision: e?.revision ?? 0, create_revision: e?.create_revision ?? 0 };
  }

  async exec_tx(p: ParamsIn<Methods['exec_tx']>) {
    this.txs++;
    const hook = this.beforeTx;
    this.beforeTx = null;
    hook?.();
    const conflicts = (p.compares ?? []).filter((c) => (this.data.get(c.key)?.revision ?? 0) !== c.revision).map((c) => c.key);
    if (conflicts.length > 0) return { succeeded: false, revision: this.rev, conflicts };
    this.rev++;
    for (const op of p.ops) {
      if (op.op === 'delete') this.data.delete(op.key);
      else this.data.set(op.key, { value: op.value, revision: this.rev, create_revision: this.data.get(op.key)?.create_revision ?? this.rev });
    }
    return { succeeded: true, revision: this.rev, conflicts: [] };
  }

  async watch(): Promise<never> {
    throw new KrpcError('UNAVAILABLE', 'not watched in these tests');
  }
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const ZONE = 'test.example.com';

async function deviceDoc(owner: KeyPair, name: string, role: DeviceRole, zone = ZONE): Promise<string> {
  const key = generateKeyPair().publicKeyB64;
  const iat = Math.floor(T0 / 1000);
  return signDocument({ typ: 'device', name, zone, did: `did:dev:${key}`, key, role, iat, exp: iat + DOCUMENT_LIFETIME_SEC }, owner.privateKey);
}

/** A one-device zone as node_daemon leaves it at boot: documents, the seeded run config, fresh heartbeats. */
/** The parts of a boot config the snapshot reader uses: the zone, and the keys device documents are signed by. */
function bootFor(owner: KeyPair): ZoneBootConfig {
  return {
    typ: 'zone-boot', zone: ZONE, owner: 'alice', owner_key: owner.publicKeyB64, verify_hub_key: owner.publicKeyB64, enrol_key: owner.publicKeyB64,
    core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat: 0, exp: 2 ** 31,
  };
}

async function bootedZone(owner: KeyPair, at: number): Promise<MemoryConfig> {
  const store = new MemoryConfig();
  store.put('devices/ood1/doc', await deviceDoc(owner, 'ood1', 'core'));
  store.put('devices/ood1/info', JSON.stringify({ memory: { total_bytes: 8 * GiB }, addresses: [{ iface: 'eth0', family: 'IPv4', address: '192.168.1.20' }] }));
  store.put('nodes/ood1/config', JSON.stringify({ kernel: KERNEL, apps: [] }));
  heartbeats(store, at);
  store.put('users/alice/settings', JSON.stringify({ name: 'alice', role: 'admin', state: 'active' }));
  return store;
}

function heartbeats(store: MemoryConfig, at: number): void {
  for (const s of KERNEL) {
    const report = { node: 'ood1', pid: 100, port: PORTS[s], state: 'running', healthy: true, restarts: 0, rss_bytes: 1, heartbeat_at: at };
    store.put(`services/${s}/instances/ood1`, JSON.stringify(report));
  }
}

describe('Scheduler: ticks against the store', () => {
  it('writes the intent in one transaction, then makes no write at all while nothing changes', async () => {
    const owner = generateKeyPair();
    let now = T0;
    const store = await bootedZone(owner, now);
    const scheduler = new Scheduler({ config: store, boot: bootFor(owner), log: quiet, now: () => now });

    const first = await scheduler.tick();
    assert.equal(first.written, true);
    assert.equal(store.txs, 1);
    assert.deepEqual(first.changes.map((c) => c.key), [...KERNEL.map((s) => `services/${s}/info`).sort(), RBAC_TAIL_KEY]);
    assert.ok(!first.changes.some((c) => c.key.startsWith('nodes/')), 'the seeded run config is already right');
    const snapshot = JSON.stringify([...store.data]);

    for (let i = 1; i <= 3; i++) {
      now += TICK_INTERVAL_MS;
      heartbeats(store, now - 100);
      const before = JSON.stringify([...store.data].filter(([k]) => isOwnedKey(k)));
      const r = await scheduler.tick();
      assert.deepEqual(r, { changes: [], written: false, revision: null, conflicts: [] });
      assert.equal(JSON.stringify([...store.data].filter(([k]) => isOwnedKey(k))), before);
    }
    assert.equal(store.txs, 1, 'no exec_tx when nothing changed');
    assert.notEqual(JSON.stringify([...store.data]), snapshot, 'heartbeats did move on meanwhile');
    assert.deepEqual(
      { ...scheduler.status(), last_tick_at: null },
      { last_tick_at: null, last_write_revision: first.revision, ticks: 4, writes: 1, conflicts: 0, last_error: null, problems: [] },
    );
  });

  it('loses a race to a conflicting write without clobbering it, and converges on the next tick', async () => {
    const owner = generateKeyPair();
    const store = await bootedZone(owner, T0);
    const scheduler = new Scheduler({ config: store, boot: bootFor(owner), log: quiet, now: () => T0 });
    const theirs = JSON.stringify({ instances: [{ node: 'ood1', host: '127.0.0.1', port: 1, state: 'running' }], updated_at: 1 });
    store.beforeTx = () => store.put('services/klog/info', theirs);

    const lost = await scheduler.tick();
    assert.equal(lost.written, false);
    assert.deepEqual(lost.conflicts, ['services/klog/info']);
    assert.equal(store.data.get('services/klog/info')?.value, theirs, 'the other write stands');
    assert.equal(store.data.get('services/verify-hub/info'), undefined, 'and nothing of the failed transaction was applied');
    assert.equal(scheduler.status().conflicts, 1);

    const retry = await scheduler.tick();
    assert.equal(retry.written, true);
    assert.equal(JSON.parse(store.data.get('services/klog/info')!.value).instances[0].port, PORTS.klog);
    assert.equal((await scheduler.tick()).written, false);
  });

  it('reads only verified devices of its own zone, and names the rest', async () => {
    const owner = generateKeyPair();
    const store = await bootedZone(owner, T0);
    store.put('devices/evil/doc', await deviceDoc(generateKeyPair(), 'evil', 'core'));
    store.put('devices/other/doc', await deviceDoc(owner, 'other', 'core', 'other.example.com'));
    store.put('devices/liar/doc', await deviceDoc(owner, 'ood2', 'core'));
    store.put('services/share/spec', '{"replicas":1,"roles":["core"],"memory":1}');
    const scheduler = new Scheduler({ config: store, boot: bootFor(owner), log: quiet, now: () => T0 });
    await scheduler.tick();
    assert.deepEqual([...store.data.keys()].filter((k) => k.startsWith('nodes/')), ['nodes/ood1/config']);
    const problems = scheduler.status().problems.join('\n');
    assert.match(problems, /devices\/evil\/doc: device document has an invalid signature/);
    assert.match(problems, /devices\/other\/doc: device document of "other" belongs to zone "other\.example\.com"/);
    assert.match(problems, /devices\/liar\/doc: the document is for device ood2/);
    assert.match(problems, /services\/share\/spec: .*memory/);
  });

  it('turns installed apps of existing users into the tail, and ignores a deleted user\'s', async () => {
    const owner = generateKeyPair();
    const store = await bootedZone(owner, T0);
    store.put('users/alice/apps/share/spec', JSON.stringify({ name: 'Share', permissions: [{ resource: 'obj://dfs/*/home/{user}/photos/**', actions: 'read' }] }));
    store.put('users/ghost/apps/spy/spec', JSON.stringify({ permissions: [] }));
    const scheduler = new Scheduler({ config: store, boot: bootFor(owner), log: quiet, now: () => T0 });
    await scheduler.tick();
    const tail = store.data.get(RBAC_TAIL_KEY)!.value;
    assert.deepEqual(tail.split('\n').filter((l) => l && !l.startsWith('#')), ['g2, share, app', 'p2, share, obj://dfs/*/home/alice/photos/**, read']);
  });
});

describe('scheduler methods: who may call', () => {
  const principal = (p: Partial<Principal>): Principal => ({ userId: 'alice', appId: 'control-panel', kind: 'session', expiresAt: 0, ...p });
  const ctx = (p: Principal | null): CallContext => ({ principal: p, token: null, trace: 't', seq: 0, remoteAddress: '127.0.0.1' });
  const roles: Record<string, string> = { alice: 'admin', bob: 'user' };
  const authorize = createAuthorize(async (u) => {
    if (u === 'broken') throw new Error('system-config down');
    return roles[u];
  });
  const rows: { name: string; p: Principal | null; want: 'OK' | string }[] = [
    { name: 'a kernel service', p: principal({ userId: 'node-daemon', appId: 'buckyos-cli', kind: 'service' }), want: 'OK' },
    { name: 'an admin in the control panel', p: principal({}), want: 'OK' },
    { name: 'an admin in the CLI', p: principal({ appId: 'buckyos-cli' }), want: 'OK' },
    { name: 'an admin\'s token in an installed app', p: principal({ appId: 'share' }), want: 'PERMISSION_DENIED' },
    { name: 'a plain user', p: principal({ userId: 'bob' }), want: 'PERMISSION_DENIED' },
    { name: 'an unknown user', p: principal({ userId: 'nobody' }), want: 'PERMISSION_DENIED' },
    { name: 'anyone while roles cannot be read', p: principal({ userId: 'broken' }), want: 'UNAVAILABLE' },
    { name: 'no principal', p: null, want: 'UNAUTHENTICATED' },
  ];
  for (const row of rows) {
    it(`${row.want === 'OK' ? 'lets in' : 'refuses'} ${row.name}`, async () => {
      if (row.want === 'OK') await authorize(ctx(row.p));
      else await assert.rejects(authorize(ctx(row.p)), (e: KrpcError) => e.code === row.want);
    });
  }
});

describe('derive: dfs follows storage', () => {
  it('runs dfs on nodes with a disk or a volume role, and nowhere without storage', () => {
    const input = (storageNodes: string[]) => ({
      devices: { ood1: device('core', 1), nas: device('storage', 2), pn: device('portable', 3) },
      instances: [],
      specs: {},
      apps: [],
      current: {},
      storageNodes,
    });
    assert.deepEqual(derive(input([]), T0).placement.dfs, []);
    assert.deepEqual(derive(input(['nas', 'pn']), T0).placement.dfs, ['nas', 'pn']);
    const out = derive(input(['nas']), T0);
    assert.ok((JSON.parse(out.keys['nodes/nas/config']!) as { kernel: string[] }).kernel.includes('dfs'));
    assert.ok(!(JSON.parse(out.keys['nodes/ood1/config']!) as { kernel: string[] }).kernel.includes('dfs'));
    assert.deepEqual(derive({ ...input(['nas']), storageNodes: ['nas', 'gone'] }, T0).placement.dfs, ['nas'], 'a node that is not a device gets nothing');
  });

  it('lets an admin spec override where dfs runs', () => {
    const out = derive({ devices: { ood1: device('core', 1), nas: device('storage', 2) }, instances: [], specs: { dfs: { replicas: 'all', roles: ['core'] } }, apps: [], current: {}, storageNodes: ['nas'] }, T0);
    assert.deepEqual(out.placement.dfs, ['ood1']);
  });
});
