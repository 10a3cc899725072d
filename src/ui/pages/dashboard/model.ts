// What the dashboard shows, derived from what the zone reports: devices and their health, services and their
// instances, storage capacity, and the alerts that follow from them. A pure function of its input, so every rule is
// tested without a browser; the page only loads the input and draws the result.
import type { Result } from '../../../lib/krpc/service.ts';
import type { verifyHubApi } from '../../../lib/api/verify-hub.ts';
import type { systemConfigApi } from '../../../lib/api/system-config.ts';
import type { dfsApi } from '../../../lib/api/dfs.ts';
import type { InstanceReport, ServiceInfo } from '../../../lib/config/zone-records.ts';
import type { DeviceInfo } from '../../../lib/sysinfo.ts';

type ZoneDevice = Result<typeof verifyHubApi.methods.device_list>['devices'][number];
type ConfigEntry = Result<typeof systemConfigApi.methods.list>['entries'][number];
export type DfsStatus = Result<typeof dfsApi.methods.status>;
export type StoreStatus = Result<typeof systemConfigApi.methods.status>;

/** The scheduler calls an instance dead after this long without a heartbeat, and verify-hub a device offline. */
export const STALE_AFTER_MS = 90_000;
/** A disk this full is worth an alert. */
const FULL_PERCENT = 90;

export interface DashboardInput {
  now: number;
  /** verify-hub.device_list; null when the caller may not list devices (only admins may). */
  devices: ZoneDevice[] | null;
  /** system-config entries under devices/ (their `info` reports are read). */
  deviceEntries: ConfigEntry[];
  /** system-config entries under services/ (`info` routes and `instances/<node>` heartbeats). */
  serviceEntries: ConfigEntry[];
  /** dfs.status, or how it failed; null when dfs runs nowhere (storage was never set up), so it was not asked. */
  storage: { ok: true; status: DfsStatus } | { ok: false; message: string } | null;
  /** system-config.status; null when it failed. */
  store: StoreStatus | null;
}

export type Health = 'healthy' | 'starting' | 'degraded' | 'down';

export interface DeviceView {
  name: string;
  role: ZoneDevice['role'] | null;
  state: ZoneDevice['state'];
  /** The device whose verify-hub answered: the one this page came from. */
  current: boolean;
  addresses: string[];
  /** Milliseconds since the epoch. */
  lastSeen: number | null;
  cpu: { count: number; load1: number } | null;
  memory: { total: number; used: number } | null;
  systemDisk: { mount: string; size: number; free: number } | null;
  uptimeSec: number | null;
}

export interface InstanceView {
  node: string;
  health: Exclude<Health, 'degraded'>;
  rssBytes: number | null;
  restarts: number | null;
}

export interface ServiceView {
  name: string;
  health: Health;
  instances: InstanceView[];
}

export interface DiskView {
  node: string;
  disk: string;
  state: DfsStatus['disks'][number]['state'];
  capacity: number;
  free: number;
  errors: number;
}

export type Capacity =
  | { kind: 'none' }
  | { kind: 'error'; message: string }
  | { kind: 'dfs'; disks: DiskView[]; total: number; free: number };

export type Alert = { severity: 'critical' | 'warning' } & (
  | { kind: 'device_offline'; device: string; lastSeen: number | null }
  | { kind: 'device_unknown'; device: string }
  | { kind: 'service_down'; service: string }
  | { kind: 'service_degraded'; service: string; nodes: string[] }
  | { kind: 'disk_unreachable'; device: string; disk: string }
  | { kind: 'disk_errors'; device: string; disk: string; count: number }
  | { kind: 'disk_full'; device: string; disk: string; percent: number }
  | { kind: 'under_replicated'; count: number }
  | { kind: 'store_frozen'; reason: string }
  | { kind: 'store_no_quorum' }
  | { kind: 'store_member_down'; count: number }
);

export interface DashboardModel {
  devices: DeviceView[];
  services: ServiceView[];
  capacity: Capacity;
  alerts: Alert[];
  /** Whether the caller saw the admin's view (device list, heartbeats); a non-admin sees less. */
  complete: boolean;
}

/** A stored JSON document as an object whose fields are checked where read: records come from other processes. */
function parseRecord<T>(value: string | null): Partial<T> | null {
  if (value === null) return null;
  try {
    const v: unknown = JSON.parse(value);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Partial<T>) : null;
  } catch {
    return null;
  }
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function deviceDetails(info: Partial<DeviceInfo & { reported_at: number }> | null): Pick<DeviceView, 'cpu' | 'memory' | 'systemDisk' | 'uptimeSec'> {
  const count = num(info?.cpu?.count);
  const total = num(info?.memory?.total_bytes);
  const free = num(info?.memory?.free_bytes);
  const disks = Array.isArray(info?.disks) ? info.disks.filter((d) => typeof d?.mount === 'string' && num(d.size_bytes) !== null && num(d.free_bytes) !== null) : [];
  const root = disks.find((d) => d.mount === '/') ?? [...disks].sort((a, b) => b.size_bytes - a.size_bytes)[0];
  return {
    cpu: count === null ? null : { count, load1: num(info?.cpu?.load1) ?? 0 },
    memory: total === null || free === null ? null : { total, used: total - free },
    systemDisk: root ? { mount: root.mount, size: root.size_bytes, free: root.free_bytes } : null,
    uptimeSec: num(info?.uptime_sec),
  };
}

function buildDevices(input: DashboardInput): DeviceView[] {
  const infos = new Map<string, Partial<DeviceInfo & { reported_at: number }>>();
  for (const e of input.deviceEntries) {
    const m = /^devices\/([^/]+)\/info$/.exec(e.key);
    const info = m ? parseRecord<DeviceInfo & { reported_at: number }>(e.value) : null;
    if (m && info) infos.set(m[1]!, info);
  }
  if (input.devices) {
    return input.devices.map((d) => ({
      name: d.name,
      role: d.role,
      state: d.state,
      current: d.current,
      addresses: d.addresses,
      lastSeen: d.last_seen === null ? null : d.last_seen * 1000,
      ...deviceDetails(infos.get(d.name) ?? null),
    }));
  }
  // Without the device list (not an admin), the reports are all there is: online means reported lately.
  return [...infos].map(([name, info]) => {
    const seen = num(info.reported_at);
    const addresses = Array.isArray(info.addresses) ? info.addresses.flatMap((a) => (typeof a?.address === 'string' ? [a.address] : [])) : [];
    return {
      name,
      role: null,
      state: seen === null ? 'unknown' : input.now - seen <= STALE_AFTER_MS ? 'online' : 'offline',
      current: false,
      addresses,
      lastSeen: seen,
      ...deviceDetails(info),
    };
  });
}

function instanceHealth(state: string, report: Partial<InstanceReport> | null, now: number): InstanceView['health'] {
  if (state === 'dead') return 'down';
  if (state === 'starting') return 'starting';
  if (report) {
    const beat = num(report.heartbeat_at);
    if (beat !== null && now - beat > STALE_AFTER_MS) return 'down';
    if (report.healthy === false) return report.state === 'starting' ? 'starting' : 'down';
  }
  return 'healthy';
}

function serviceHealth(instances: InstanceView[]): Health {
  const healthy = instances.filter((i) => i.health === 'healthy').length;
  if (healthy === instances.length) return 'healthy';
  if (healthy > 0) return 'degraded';
  return instances.some((i) => i.health === 'starting') ? 'starting' : 'down';
}

function buildServices(input: DashboardInput): { services: ServiceView[]; heartbeats: boolean } {
  const infos = new Map<string, Partial<ServiceInfo>>();
  const reports = new Map<string, Partial<InstanceReport>>();
  for (const e of input.serviceEntries) {
    const info = /^services\/([^/]+)\/info$/.exec(e.key);
    const inst = /^services\/([^/]+)\/instances\/([^/]+)$/.exec(e.key);
    if (info) {
      const v = parseRecord<ServiceInfo>(e.value);
      if (v) infos.set(info[1]!, v);
    } else if (inst) {
      const v = parseRecord<InstanceReport>(e.value);
      if (v) reports.set(`${inst[1]}/${inst[2]}`, v);
    }
  }
  const services: ServiceView[] = [];
  for (const [name, info] of [...infos].sort(([a], [b]) => a.localeCompare(b))) {
    const listed = Array.isArray(info.instances) ? info.instances.filter((i) => typeof i?.node === 'string' && typeof i.state === 'string') : [];
    // A service with no instance is not placed anywhere (an opt-in service nobody asked for): nothing to show.
    if (listed.length === 0) continue;
    const instances = listed.map((i) => {
      const report = reports.get(`${name}/${i.node}`) ?? null;
      return { node: i.node, health: instanceHealth(i.state, report, input.now), rssBytes: num(report?.rss_bytes), restarts: num(report?.restarts) };
    });
    services.push({ name, health: serviceHealth(instances), instances });
  }
  return { services, heartbeats: reports.size > 0 };
}

/** Whether `services/<name>/info` places the service on any device. */
export function servicePlaced(entries: readonly ConfigEntry[], name: string): boolean {
  const info = parseRecord<ServiceInfo>(entries.find((e) => e.key === `services/${name}/info`)?.value ?? null);
  return Array.isArray(info?.instances) && info.instances.length > 0;
}

function buildCapacity(input: DashboardInput): Capacity {
  if (input.storage === null) return { kind: 'none' };
  if (!input.storage.ok) return { kind: 'error', message: input.storage.message };
  const disks = input.storage.status.disks.map((d) => ({
    node: d.node,
    disk: d.disk_id,
    state: d.state,
    capacity: d.capacity_bytes,
    free: d.free_bytes,
    errors: d.errors.read + d.errors.write + d.errors.corrupt,
  }));
  if (disks.length === 0) return { kind: 'none' };
  return { kind: 'dfs', disks, total: disks.reduce((a, d) => a + d.capacity, 0), free: disks.reduce((a, d) => a + d.free, 0) };
}

const percentUsed = (size: number, free: number) => (size > 0 ? Math.round(((size - free) / size) * 100) : 0);

function buildAlerts(input: DashboardInput, devices: DeviceView[], services: ServiceView[], capacity: Capacity): Alert[] {
  const alerts: Alert[] = [];
  for (const d of devices) {
    if (d.state === 'offline') alerts.push({ severity: d.role === 'core' ? 'critical' : 'warning', kind: 'device_offline', device: d.name, lastSeen: d.lastSeen });
    else if (d.state === 'unknown') alerts.push({ severity: 'warning', kind: 'device_unknown', device: d.name });
    if (d.systemDisk && percentUsed(d.systemDisk.size, d.systemDisk.free) >= FULL_PERCENT) {
      alerts.push({ severity: 'warning', kind: 'disk_full', device: d.name, disk: d.systemDisk.mount, percent: percentUsed(d.systemDisk.size, d.systemDisk.free) });
    }
  }
  for (const s of services) {
    if (s.health === 'down') alerts.push({ severity: 'critical', kind: 'service_down', service: s.name });
    else if (s.health === 'degraded') alerts.push({ severity: 'warning', kind: 'service_degraded', service: s.name, nodes: s.instances.filter((i) => i.health !== 'healthy').map((i) => i.node) });
  }
  if (capacity.kind === 'dfs') {
    for (const d of capacity.disks) {
      if (d.state === 'unreachable') alerts.push({ severity: 'critical', kind: 'disk_unreachable', device: d.node, disk: d.disk });
      if (d.errors > 0) alerts.push({ severity: 'warning', kind: 'disk_errors', device: d.node, disk: d.disk, count: d.errors });
      if (d.state !== 'unreachable' && percentUsed(d.capacity, d.free) >= FULL_PERCENT) alerts.push({ severity: 'warning', kind: 'disk_full', device: d.node, disk: d.disk, percent: percentUsed(d.capacity, d.free) });
    }
  }
  if (input.storage?.ok && input.storage.status.under_replicated > 0) alerts.push({ severity: 'warning', kind: 'under_replicated', count: input.storage.status.under_replicated });
  const store = input.store;
  if (store?.frozen) alerts.push({ severity: 'critical', kind: 'store_frozen', reason: store.frozen });
  if (store?.cluster && !store.cluster.has_quorum) alerts.push({ severity: 'critical', kind: 'store_no_quorum' });
  else if (store?.cluster && store.cluster.healthy < store.cluster.members.length) alerts.push({ severity: 'warning', kind: 'store_member_down', count: store.cluster.members.length - store.cluster.healthy });
  return alerts.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'critical' ? -1 : 1));
}

export function buildDashboard(input: DashboardInput): DashboardModel {
  const devices = buildDevices(input).sort((a, b) => Number(b.current) - Number(a.current) || a.name.localeCompare(b.name));
  const { services, heartbeats } = buildServices(input);
  const capacity = buildCapacity(input);
  return { devices, services, capacity, alerts: buildAlerts(input, devices, services, capacity), complete: input.devices !== null && heartbeats };
}
