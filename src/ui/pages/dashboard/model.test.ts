// The dashboard's rules, from what the zone reports to what is shown and which alerts follow.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type DashboardInput, STALE_AFTER_MS, buildDashboard, servicePlaced } from './model.ts';

const NOW = 1_800_000_000_000;

const entry = (key: string, value: unknown) => ({ key, value: typeof value === 'string' ? value : JSON.stringify(value), revision: 1, create_revision: 1 });
const device = (name: string, state: 'online' | 'offline' | 'unknown', extra: Partial<{ role: 'core' | 'storage'; current: boolean }> = {}) => ({
  name, role: extra.role ?? 'core', did: `did:dev:${name}`, state, addresses: ['192.0.2.1'], last_seen: state === 'unknown' ? null : NOW / 1000 - 5, current: extra.current ?? false,
});
const info = (node: string, state = 'running') => ({ node, host: '127.0.0.1', port: 3200, state });
const report = (node: string, healthy = true, beat = NOW - 1000) => ({ node, pid: 1, port: 3200, state: 'running', healthy, restarts: 0, rss_bytes: 50_000_000, heartbeat_at: beat });
const deviceInfo = { hostname: 'vm', cpu: { model: 'x', count: 4, load1: 0.5 }, memory: { total_bytes: 8e9, free_bytes: 6e9 }, disks: [{ mount: '/boot', device: '/dev/sda1', fstype: 'ext4', size_bytes: 1e9, free_bytes: 5e8 }, { mount: '/', device: '/dev/sda2', fstype: 'ext4', size_bytes: 1e11, free_bytes: 5e10 }], addresses: [{ iface: 'eth0', family: 'IPv4', address: '192.0.2.1' }], uptime_sec: 3600, reported_at: NOW - 2000 };

function input(over: Partial<DashboardInput> = {}): DashboardInput {
  return {
    now: NOW,
    devices: [device('vm', 'online', { current: true })],
    deviceEntries: [entry('devices/vm/doc', 'eyJ.jwt.x'), entry('devices/vm/info', deviceInfo)],
    serviceEntries: [
      entry('services/system-config/info', { instances: [info('vm')], updated_at: NOW }),
      entry('services/system-config/instances/vm', report('vm')),
      entry('services/system-config/spec', { replicas: 1, roles: ['core'] }),
    ],
    storage: null,
    store: { backend: 'sqlite', revision: 10, frozen: null, cluster: null },
    ...over,
  };
}

describe('buildDashboard', () => {
  it('shows a healthy single-device zone without alerts', () => {
    const m = buildDashboard(input());
    assert.deepEqual(m.alerts, []);
    assert.equal(m.complete, true);
    assert.deepEqual(m.devices.map((d) => [d.name, d.state, d.current]), [['vm', 'online', true]]);
    const [d] = m.devices;
    assert.deepEqual(d!.cpu, { count: 4, load1: 0.5 });
    assert.deepEqual(d!.memory, { total: 8e9, used: 2e9 });
    assert.deepEqual(d!.systemDisk, { mount: '/', size: 1e11, free: 5e10 }, 'the root file system, not the largest or first');
    assert.deepEqual(m.services, [{ name: 'system-config', health: 'healthy', instances: [{ node: 'vm', health: 'healthy', rssBytes: 50_000_000, restarts: 0 }] }]);
    assert.deepEqual(m.capacity, { kind: 'none' });
  });

  it('alerts on an offline device, critically for a core device, and on one that never reported', () => {
    const m = buildDashboard(input({ devices: [device('vm', 'online', { current: true }), device('nas', 'offline'), device('usb', 'offline', { role: 'storage' }), device('new', 'unknown', { role: 'storage' })] }));
    assert.deepEqual(m.alerts.map((a) => [a.severity, a.kind, 'device' in a ? a.device : '']), [
      ['critical', 'device_offline', 'nas'],
      ['warning', 'device_unknown', 'new'],
      ['warning', 'device_offline', 'usb'],
    ]);
    assert.deepEqual(m.devices.map((d) => d.name), ['vm', 'nas', 'new', 'usb'], 'this device first, then by name');
  });

  it('tells a service that is down from one that is degraded or starting', () => {
    const svc = (name: string, instances: ReturnType<typeof info>[], reports: ReturnType<typeof report>[]) => [
      entry(`services/${name}/info`, { instances, updated_at: NOW }),
      ...reports.map((r) => entry(`services/${name}/instances/${r.node}`, r)),
    ];
    const m = buildDashboard(input({
      serviceEntries: [
        ...svc('a-dead', [info('vm', 'dead')], []),
        ...svc('b-unhealthy', [info('vm')], [report('vm', false)]),
        ...svc('c-stale', [info('vm')], [report('vm', true, NOW - STALE_AFTER_MS - 1)]),
        ...svc('d-half', [info('vm'), info('nas')], [report('vm'), report('nas', false)]),
        ...svc('e-starting', [info('vm', 'starting')], []),
        ...svc('f-unplaced', [], []),
      ],
    }));
    assert.deepEqual(m.services.map((s) => [s.name, s.health]), [['a-dead', 'down'], ['b-unhealthy', 'down'], ['c-stale', 'down'], ['d-half', 'degraded'], ['e-starting', 'starting']]);
    assert.deepEqual(m.alerts.map((a) => [a.severity, a.kind, 'service' in a ? a.service : '']), [
      ['critical', 'service_down', 'a-dead'],
      ['critical', 'service_down', 'b-unhealthy'],
      ['critical', 'service_down', 'c-stale'],
      ['warning', 'service_degraded', 'd-half'],
    ]);
    assert.deepEqual(m.alerts.find((a) => a.kind === 'service_degraded'), { severity: 'warning', kind: 'service_degraded', service: 'd-half', nodes: ['nas'] });
  });

  it('reads storage from dfs, with alerts for unreachable, failing, full and under-replicated disks', () => {
    const disk = (disk_id: string, state: 'active' | 'unreachable', free: number, errors = 0) => ({
      node: 'vm', disk_id, path: `/srv/${disk_id}`, state, chunks: 1, bytes: 1, capacity_bytes: 1000, free_bytes: free, errors: { read: errors, write: 0, corrupt: 0 }, repairs: 0, last_scrub_at: null,
    });
    const status = { node: 'vm', disks: [disk('d1', 'active', 500), disk('d2', 'unreachable', 0), disk('d3', 'active', 50, 3)], volumes: [], under_replicated: 7, rebalanced: 0, scrub: { running: false, checked: 0, corrupt: 0, missing: 0, repaired: 0 } };
    const m = buildDashboard(input({ storage: { ok: true, status } }));
    assert.equal(m.capacity.kind, 'dfs');
    assert.deepEqual(m.capacity.kind === 'dfs' && [m.capacity.total, m.capacity.free], [3000, 550]);
    assert.deepEqual(m.alerts.map((a) => a.kind), ['disk_unreachable', 'disk_errors', 'disk_full', 'under_replicated']);
    assert.deepEqual(buildDashboard(input({ storage: { ok: true, status: { ...status, disks: [], under_replicated: 0 } } })).capacity, { kind: 'none' }, 'dfs with no disk is no storage');
    assert.deepEqual(buildDashboard(input({ storage: { ok: false, message: 'instance unreachable' } })).capacity, { kind: 'error', message: 'instance unreachable' });
  });

  it('alerts when the zone store is read-only, without quorum, or missing members', () => {
    const member = (name: string, healthy: boolean) => ({ name, id: name, healthy, leader: false, client_urls: [], problem: null });
    const cluster = (healthy: number, has_quorum: boolean) => ({ members: [member('a', true), member('b', healthy > 1), member('c', healthy > 2)], healthy, quorum: 2, has_quorum, fault_tolerance: 0, leader: 'a' });
    const kinds = (store: DashboardInput['store']) => buildDashboard(input({ store })).alerts.map((a) => [a.severity, a.kind]);
    assert.deepEqual(kinds({ backend: 'sqlite', revision: 1, frozen: 'moving to etcd', cluster: null }), [['critical', 'store_frozen']]);
    assert.deepEqual(kinds({ backend: 'etcd', revision: 1, frozen: null, cluster: cluster(1, false) }), [['critical', 'store_no_quorum']]);
    assert.deepEqual(kinds({ backend: 'etcd', revision: 1, frozen: null, cluster: cluster(2, true) }), [['warning', 'store_member_down']]);
    assert.deepEqual(kinds(null), []);
  });

  it('shows a non-admin the reports alone, and survives malformed records', () => {
    const m = buildDashboard(input({
      devices: null,
      deviceEntries: [entry('devices/vm/info', deviceInfo), entry('devices/old/info', { ...deviceInfo, reported_at: NOW - STALE_AFTER_MS - 1 }), entry('devices/bad/info', '{not json'), entry('devices/arr/info', '[1]')],
      serviceEntries: [entry('services/klog/info', { instances: [info('vm'), { node: 7 }], updated_at: NOW }), entry('services/x/info', 'null')],
    }));
    assert.equal(m.complete, false);
    assert.deepEqual(m.devices.map((d) => [d.name, d.state, d.role, d.addresses]), [['old', 'offline', null, ['192.0.2.1']], ['vm', 'online', null, ['192.0.2.1']]]);
    assert.deepEqual(m.services.map((s) => [s.name, s.health, s.instances.length]), [['klog', 'healthy', 1]]);
  });
});

describe('servicePlaced', () => {
  it('is true only for a service with an instance somewhere', () => {
    const entries = [entry('services/dfs/info', { instances: [info('vm')], updated_at: NOW }), entry('services/ns/info', { instances: [], updated_at: NOW })];
    assert.equal(servicePlaced(entries, 'dfs'), true);
    assert.equal(servicePlaced(entries, 'ns'), false);
    assert.equal(servicePlaced(entries, 'klog'), false);
  });
});
