// The scheduler's decision (DESIGN §1.2): a pure function from what the zone is (devices, heartbeats, specs, installed
// apps) to what system-config should say about it (each node's run config, each service's route, the RBAC tail). No
// I/O and no clock — time comes in as `nowMs` — so the same input always gives the same output, byte for byte, and
// every rule here is checked by the table tests in derive.test.ts. snapshot.ts builds the input; scheduler.ts writes
// the difference. docs/scheduler.md describes the rules for operators.
import type { z } from 'zod';
import type { txOp } from '../../lib/api/system-config.ts';
import { KERNEL_SERVICE_PORTS, type KernelServiceName } from '../../lib/config/node-config.ts';
import {
  type InstanceReport,
  type NodeRunConfig,
  type ServiceInfo,
  type ServiceSpec,
  SERVICE_NAME,
  nodeRunConfigSchema,
  serviceInfoSchema,
} from '../../lib/config/zone-records.ts';
import { DEVICE_ROLES, type DeviceRole } from '../../lib/identity/documents.ts';
import { RBAC_TAIL_KEY } from '../../lib/rbac/config-sync.ts';
import { DEFAULT_POLICY } from '../../lib/rbac/default-policy.ts';
import { formatActions, parseActions } from '../../lib/rbac/model.ts';
import { type Rule, parsePolicyCsv, policyNames, ruleText, tailViolation, validateRule } from '../../lib/rbac/policy-text.ts';

/** An instance whose last heartbeat is older than this is dead, and so is a node all of whose instances are. */
export const DEAD_AFTER_MS = 90_000;

export interface DeviceInput {
  /** From the owner-signed device document. */
  role: DeviceRole;
  /** Total memory from `devices/<n>/info`; null until the node has reported. */
  memory_bytes: number | null;
  /** The node's first IPv4 address from `devices/<n>/info`; null until it has reported one. */
  ipv4: string | null;
}

/** One `services/<service>/instances/<node>` heartbeat. */
export interface InstanceInput {
  service: string;
  node: string;
  port: number;
  state: InstanceReport['state'];
  healthy: boolean;
  heartbeat_at: number;
}

/** One `users/<user>/apps/<app>/spec` of an existing user. */
export interface InstalledApp {
  user: string;
  app: string;
  permissions: { resource: string; actions: string }[];
}

export interface SchedulerInput {
  /** Devices with a verified owner-signed document, by name. */
  devices: Record<string, DeviceInput>;
  instances: InstanceInput[];
  /** Valid `services/<s>/spec` documents, by service. */
  specs: Record<string, ServiceSpec>;
  apps: InstalledApp[];
  /** What the keys the scheduler owns (`isOwnedKey`) hold now: what it keeps when nothing changed. */
  current: Record<string, string>;
  /** Devices with a document that fails verification (tampered, expired, another zone's): not trusted with work or
   * routes, but not removed either, since that is an admin's act (device_remove). Treated like a dead node. */
  untrusted?: string[];
  /** Nodes with a registered disk or a role in a volume (`storage/`): where dfs runs unless a spec says otherwise. */
  storageNodes?: string[];
}

export interface SchedulerOutput {
  /** The desired value of every key the scheduler owns, in key order. An owned key missing here should not exist. */
  keys: Record<string, string>;
  /** Service → the nodes it is placed on. */
  placement: Record<string, string[]>;
  /** Input the scheduler could not honour, in a stable order, for `status` and the log. */
  problems: string[];
}

const KERNEL_ORDER = Object.keys(KERNEL_SERVICE_PORTS) as KernelServiceName[];
const isKernel = (s: string): s is KernelServiceName => Object.hasOwn(KERNEL_SERVICE_PORTS, s);

const EVERY_CORE: ServiceSpec = { replicas: 'all', roles: ['core'] };

/** The kernel's own placement: the control plane on every core node, the gateway (every node's entry) everywhere. */
const BUILTIN_SPECS: Readonly<Record<KernelServiceName, ServiceSpec>> = {
  'system-config': EVERY_CORE,
  'verify-hub': EVERY_CORE,
  klog: EVERY_CORE,
  scheduler: EVERY_CORE,
  gateway: { replicas: 'all', roles: [...DEVICE_ROLES] },
  // Opt-in (OPT_IN_KERNEL_SERVICES): nowhere until an admin's spec, e.g. {"replicas": "all", "roles": ["core", "gateway"]}.
  ns: { replicas: 0, roles: ['core', 'gateway'] },
  // Placed by storage, not by role (see place()); the spec is what a node without storage gets: nothing.
  dfs: { replicas: 0, roles: [...DEVICE_ROLES] },
};

/** dfs runs where storage is: every node with a disk or a volume role, unless an admin's spec says otherwise. */
const STORAGE_PLACED = 'dfs';

/** Services a spec cannot move: without them the zone could not be changed (system-config), corrected (scheduler)
 * or reached (gateway), so a mistaken spec could not be undone. */
const PINNED: ReadonlySet<string> = new Set<KernelServiceName>(['system-config', 'scheduler', 'gateway']);

/** The device roles on which a kernel service can do its work: RBAC's device side gives the kernel of a storage,
 * portable or gateway device only its own records (docs/rbac.md), so verify-hub (credentials, sessions) and klog
 * (reading the zone's logs) work only on core devices, and ns (its configuration and records) on core and gateway ones. */
const ABLE_ROLES: Partial<Record<string, readonly DeviceRole[]>> = { 'verify-hub': ['core'], klog: ['core'], ns: ['core', 'gateway'] };

const NODE_CONFIG_KEY = /^nodes\/([^/]+)\/config$/;
const SERVICE_INFO_KEY = /^services\/([^/]+)\/info$/;

/** The keys the scheduler writes, and deletes when its output no longer has them. */
export function isOwnedKey(key: string): boolean {
  return key === RBAC_TAIL_KEY || NODE_CONFIG_KEY.test(key) || SERVICE_INFO_KEY.test(key);
}

/**
 * How far ahead of the deciding device's clock a heartbeat may be stamped and still be believed (storeTime). Every
 * other node looks older by as much as the fastest believed clock is ahead, so this must stay well inside the 90 s
 * a node may be silent (clocks are assumed within a few seconds of each other, by NTP).
 */
const CLOCK_AHEAD_LIMIT_MS = 15_000;

/**
 * The time heartbeats are judged by: the newest heartbeat in the store, not the deciding device's clock. Every core
 * device runs a scheduler; with their own clocks, two a few seconds apart disagreed about a node near the 90 s mark
 * and undid each other's writes for as long. Reading the same store they now derive the same output. A heartbeat
 * stamped more than 15 s ahead of `localNow` (a node whose clock is wrong) is not believed; with none, `localNow`.
 */
export function storeTime(instances: readonly Pick<InstanceInput, 'heartbeat_at'>[], localNow: number): number {
  let newest = -Infinity;
  for (const i of instances) if (i.heartbeat_at <= localNow + CLOCK_AHEAD_LIMIT_MS && i.heartbeat_at > newest) newest = i.heartbeat_at;
  return newest === -Infinity ? localNow : newest;
}

type Liveness = 'live' | 'dead' | 'unknown';

/** A node is dead when it has heartbeats and the newest is stale; one that never reported (just added, not yet
 * booted) is unknown: it may be given work, but only while no live node can take it. */
function nodeLiveness(nodes: readonly string[], instances: readonly InstanceInput[], nowMs: number): Map<string, Liveness> {
  const last = new Map<string, number>();
  for (const i of instances) last.set(i.node, Math.max(last.get(i.node) ?? -Infinity, i.heartbeat_at));
  return new Map(
    nodes.map((n): [string, Liveness] => {
      const seen = last.get(n);
      return [n, seen === undefined ? 'unknown' : nowMs - seen > DEAD_AFTER_MS ? 'dead' : 'live'];
    }),
  );
}

function instanceState(i: InstanceInput, nowMs: number): ServiceInfo['instances'][number]['state'] {
  if (nowMs - i.heartbeat_at > DEAD_AFTER_MS) return 'dead';
  if (i.healthy) return 'running';
  return i.state === 'stopped' ? 'dead' : 'starting';
}

function parseJson<T>(text: string | undefined, schema: z.ZodType<T, z.ZodTypeDef, unknown>): T | null {
  if (text === undefined) return null;
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

function effectiveSpecs(specs: Readonly<Record<string, ServiceSpec>>, problems: string[]): [string, ServiceSpec][] {
  const out = new Map<string, ServiceSpec>(Object.entries(BUILTIN_SPECS));
  for (const name of Object.keys(specs).sort()) {
    if (!SERVICE_NAME.test(name)) problems.push(`services/${name}/spec: "${name}" is not a service name`);
    else if (PINNED.has(name)) problems.push(`services/${name}/spec is ignored: ${name} always runs where the kernel places it`);
    // Without verify-hub nobody can log in to change the spec back: the zone would lock its admins out.
    else if (name === 'verify-hub' && specs[name].replicas === 0) problems.push('services/verify-hub/spec is ignored: verify-hub needs at least one instance');
    else {
      const spec = specs[name];
      const able = ABLE_ROLES[name];
      const unable = able ? spec.roles.filter((r) => !able.includes(r)) : [];
      if (unable.length > 0) {
        const roles = spec.roles.filter((r) => !unable.includes(r));
        problems.push(`services/${name}/spec: ${name} works only on ${able!.join(' or ')} devices; ${unable.join(', ')} ${roles.length ? 'left out' : 'named alone: the spec is ignored'}`);
        if (roles.length) out.set(name, { ...spec, roles });
      } else out.set(name, spec);
    }
  }
  return [...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Service → nodes whose current run config lists it: where it is, so a counted service stays put while it can. */
function currentPlacement(input: SchedulerInput): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const node of Object.keys(input.devices)) {
    const cfg = parseJson(input.current[`nodes/${node}/config`], nodeRunConfigSchema);
    for (const s of [...(cfg?.kernel ?? []), ...(cfg?.apps ?? [])]) out.set(s, (out.get(s) ?? new Set()).add(node));
  }
  return out;
}

function place(
  input: SchedulerInput,
  nodes: readonly string[],
  liveness: ReadonlyMap<string, Liveness>,
  nowMs: number,
  problems: string[],
): { placement: Record<string, string[]>; counted: Set<string> } {
  const load = new Map(nodes.map((n) => [n, 0]));
  const current = currentPlacement(input);
  const running = new Set(input.instances.filter((i) => instanceState(i, nowMs) === 'running').map((i) => `${i.service}/${i.node}`));
  const placement: Record<string, string[]> = {};
  const counted = new Set<string>();
  for (const [service, spec] of effectiveSpecs(input.specs, problems)) {
    const eligible = nodes.filter((n) => {
      const d = input.devices[n];
      return spec.roles.includes(d.role) && (spec.min_memory_bytes === undefined || (d.memory_bytes ?? 0) >= spec.min_memory_bytes);
    });
    let chosen: string[];
    if (service === STORAGE_PLACED && !Object.hasOwn(input.specs, service)) {
      chosen = nodes.filter((n) => input.storageNodes?.includes(n));
    } else if (spec.replicas === 'all') {
      // Dead nodes keep their share: their run config is left as it is, and nothing else could take their place.
      chosen = eligible;
      if (chosen.length === 0) problems.push(`${service}: no node has one of the roles ${spec.roles.join(', ')} and the memory it needs`);
    } else {
      counted.add(service);
      const here = current.get(service) ?? new Set<string>();
      // Liveness first: a node that never reported may have been given the service only for want of a live one,
      // and must not keep it once a live one exists (it may never boot).
      const rank = (n: string) => [
        liveness.get(n) === 'live' ? 0 : 1,
        here.has(n) ? 0 : 1,
        running.has(`${service}/${n}`) ? 0 : 1,
        load.get(n)!,
        -(input.devices[n].memory_bytes ?? 0),
      ];
      const byRank = (a: string, b: string) => {
        const ra = rank(a);
        const rb = rank(b);
        for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
        return a < b ? -1 : a > b ? 1 : 0;
      };
      chosen = eligible.filter((n) => liveness.get(n) !== 'dead').sort(byRank).slice(0, spec.replicas);
      // With nowhere else to go, an instance stays on its dead node, so it is back the moment the node is.
      for (const n of eligible) if (chosen.length < spec.replicas && here.has(n) && !chosen.includes(n)) chosen.push(n);
      if (chosen.length < spec.replicas) {
        problems.push(`${service}: ${spec.replicas} replicas wanted, ${chosen.length} eligible node(s) available`);
      }
    }
    chosen.sort();
    for (const n of chosen) load.set(n, load.get(n)! + 1);
    placement[service] = chosen;
  }
  return { placement, counted };
}

/**
 * The run config a node that cannot act on a new one keeps (a dead node, an untrusted device): the one it has, less
 * the services that do not `stay`, those placed elsewhere meanwhile. Were they left listed, the node would count as
 * running them (currentPlacement) and could take them back on its return, stopping them a second time where they
 * went. Text that does not parse is kept as it is, and text that loses nothing byte for byte.
 */
function keptConfig(text: string | undefined, stays: (service: string) => boolean): string | undefined {
  const config = parseJson(text, nodeRunConfigSchema);
  if (config === null) return text;
  if ([...config.kernel, ...config.apps].every(stays)) return text;
  const kept: NodeRunConfig = { kernel: config.kernel.filter(stays), apps: config.apps.filter(stays) };
  return JSON.stringify(kept);
}

function runConfig(node: string, placement: Readonly<Record<string, string[]>>): string {
  const on = (s: string) => placement[s]?.includes(node) ?? false;
  const config: NodeRunConfig = {
    kernel: KERNEL_ORDER.filter(on),
    apps: Object.keys(placement).filter((s) => !isKernel(s) && on(s)).sort(),
  };
  return JSON.stringify(config);
}

/**
 * `services/<s>/info` for every service placed somewhere or with a live instance. An instance is listed while it
 * lives, and while dead only on a node the service is placed on (so a moved service's old instance drops out).
 * Hosts: in a zone of one device every instance is local, so 127.0.0.1; otherwise the node's first IPv4 address from
 * its device report (an instance on a node that has reported none is left out: no other node could reach it).
 * `updated_at` is when the instance list last changed, so an unchanged world leaves the document byte-identical.
 */
function serviceInfos(input: SchedulerInput, placement: Readonly<Record<string, string[]>>, nowMs: number): [string, string][] {
  const single = Object.keys(input.devices).length === 1;
  const reports = new Map<string, InstanceInput[]>();
  for (const i of input.instances) {
    if (!Object.hasOwn(input.devices, i.node) || !SERVICE_NAME.test(i.service)) continue;
    reports.set(i.service, [...(reports.get(i.service) ?? []), i]);
  }
  const services = [...new Set([...Object.keys(placement), ...reports.keys()])].sort();
  const out: [string, string][] = [];
  for (const service of services) {
    const placed = new Set(placement[service] ?? []);
    const instances: ServiceInfo['instances'] = [];
    for (const r of (reports.get(service) ?? []).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))) {
      const state = instanceState(r, nowMs);
      if (state === 'dead' && !placed.has(r.node)) continue;
      const host = single ? '127.0.0.1' : input.devices[r.node].ipv4;
      if (host === null) continue;
      instances.push({ node: r.node, host, port: r.port, state });
    }
    if (instances.length === 0 && placed.size === 0) continue;
    const key = `services/${service}/info`;
    const previous = parseJson(input.current[key], serviceInfoSchema);
    const unchanged = previous !== null && JSON.stringify(previous.instances) === JSON.stringify(instances);
    const info: ServiceInfo = { instances, updated_at: unchanged ? previous.updated_at : nowMs };
    out.push([key, JSON.stringify(info)]);
  }
  return out;
}

const TAIL_HEADER = '# Generated by the scheduler from users/<u>/apps/<app>/spec. A change made here is overwritten.\n';

/** Every name of the base policy, which the tail may not grant to or re-role. */
const BASE_NAMES = policyNames(parsePolicyCsv(DEFAULT_POLICY, 'base policy'));

/** Why the tail may not hold `rule` (the enforcer's own rules, so a tail written here always loads), or null. */
function tailProblem(rule: Rule): string | null {
  try {
    validateRule(rule.ptype, rule.fields);
  } catch (e) {
    return (e as Error).message;
  }
  return tailViolation(rule, BASE_NAMES);
}

/**
 * Why an app of `user` may not be granted `resource` (after `{user}` became `user`), or null. An app's grants are
 * keyed by app id and so apply to every user who runs it (docs/rbac.md, the tail): a grant one user consented to may
 * reach into no home but theirs, named literally. Apps ask only for files today; the other resource kinds are the
 * kernel's and admin's.
 */
function appGrantProblem(resource: string, user: string): string | null {
  const prefix = 'obj://dfs/';
  if (!resource.startsWith(prefix)) return 'an app may be granted files (obj://dfs/...) only';
  // A placeholder left after {user} is substituted would be matched per request ({app} against the app id), so a
  // segment that reads as nobody's home here could be anybody's home at check time.
  if (/[{}]/.test(resource)) return 'only {user} may stand in a granted path';
  const [volume, area, owner] = resource.slice(prefix.length).split('/');
  if (volume === '**' || area === '**') return 'it would reach into every user\'s home';
  if ((area === 'home' || area === '*') && owner !== user) return `a grant into a home must name the installing user (${user}) or {user}`;
  return null;
}

/** A rule must read back from its own text as exactly itself, or the tail it joins would not load as written. */
function roundTripProblem(rule: Rule): string | null {
  const text = ruleText(rule);
  try {
    const back = parsePolicyCsv(text);
    return back.length === 1 && ruleText(back[0]) === text ? null : 'it does not read back as one policy line';
  } catch (err) {
    return (err as Error).message;
  }
}

/** The RBAC tail: `g2, <app>, app` for every installed app and a `p2` line for each permission its spec asks for.
 * User roles are not repeated here: system-config feeds them to the enforcer straight from `users/<u>/settings`. */
function rbacTail(apps: readonly InstalledApp[], problems: string[]): string {
  const lines = new Set<string>();
  const sorted = [...apps].sort((a, b) => (a.app !== b.app ? (a.app < b.app ? -1 : 1) : a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  for (const a of sorted) {
    const where = `users/${a.user}/apps/${a.app}/spec`;
    const member: Rule = { ptype: 'g2', fields: [a.app, 'app'] };
    const why = tailProblem(member);
    if (why !== null) {
      problems.push(`${where}: app "${a.app}" is not installed: ${why}`);
      continue;
    }
    lines.add(ruleText(member));
    for (const p of a.permissions) {
      const resource = p.resource
        .split('/')
        .map((seg) => (seg === '{user}' ? a.user : seg))
        .join('/');
      let actions: string;
      try {
        actions = formatActions(parseActions(p.actions));
      } catch (err) {
        problems.push(`${where}: permission "${p.resource}" (${p.actions}) refused: ${(err as Error).message}`);
        continue;
      }
      const grant: Rule = { ptype: 'p2', fields: [a.app, resource, actions] };
      const refused = appGrantProblem(resource, a.user) ?? tailProblem(grant) ?? roundTripProblem(grant);
      if (refused !== null) problems.push(`${where}: permission "${p.resource}" (${p.actions}) refused: ${refused}`);
      else lines.add(ruleText(grant));
    }
  }
  return TAIL_HEADER + [...lines].sort().map((l) => `${l}\n`).join('');
}

function sortedRecord(entries: Iterable<[string, string]>): Record<string, string> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function derive(input: SchedulerInput, nowMs: number): SchedulerOutput {
  const problems: string[] = [];
  const nodes = Object.keys(input.devices).sort();
  if (nodes.length === 0) {
    // Nothing verified to decide for (a store not yet seeded, or documents that fail verification): deciding
    // anyway would delete every route and run config, so everything stays as it is.
    return { keys: sortedRecord(Object.entries(input.current)), placement: {}, problems: ['no device has a verified device document'] };
  }
  const liveness = nodeLiveness(nodes, input.instances, nowMs);
  const { placement, counted } = place(input, nodes, liveness, nowMs, problems);
  const keys: [string, string][] = nodes.map((node) => {
    const key = `nodes/${node}/config`;
    // A dead node cannot act on a new run config, and finding one that stops its services would make its return
    // a restart; it keeps its config but for what has moved elsewhere. A service still placed on it (an "all"
    // service, dfs by storage, a counted one with nowhere else to go) stays.
    const kept = liveness.get(node) === 'dead' ? keptConfig(input.current[key], (s) => placement[s]?.includes(node) ?? true) : undefined;
    return [key, kept ?? runConfig(node, placement)];
  });
  // An untrusted device gets nothing new, and like a dead node keeps its run config but for the counted services
  // placed elsewhere meanwhile. It is placed nothing, so "placed elsewhere" cannot be read as for a dead node: an
  // "all" service or dfs is not on it only because it is untrusted, and is its own again once it is trusted.
  const movedAway = (s: string) => counted.has(s) && (placement[s]?.length ?? 0) > 0;
  for (const node of [...new Set(input.untrusted ?? [])].sort()) {
    const key = `nodes/${node}/config`;
    const kept = keptConfig(input.current[key], (s) => !movedAway(s));
    if (kept !== undefined && !Object.hasOwn(input.devices, node)) keys.push([key, kept]);
  }
  keys.push(...serviceInfos(input, placement, nowMs));
  keys.push([RBAC_TAIL_KEY, rbacTail(input.apps, problems)]);
  return { keys: sortedRecord(keys), placement, problems };
}

export type TxOp = z.input<typeof txOp>;

export interface WritePlan {
  /** Puts and deletes, in key order. */
  ops: TxOp[];
  /** For every key in `ops`, the revision it had when read (0: absent), so a write by anyone else since fails the
   * whole transaction instead of being overwritten. */
  compares: { key: string; revision: number }[];
}

/** The difference between what the owned keys hold (`current`: value and revision) and what `output` wants. */
export function planWrites(current: Readonly<Record<string, { value: string; revision: number }>>, output: SchedulerOutput): WritePlan {
  const ops: TxOp[] = [];
  for (const [key, value] of Object.entries(output.keys)) {
    if (current[key]?.value !== value) ops.push({ op: 'put', key, value });
  }
  for (const key of Object.keys(current)) {
    if (isOwnedKey(key) && !Object.hasOwn(output.keys, key)) ops.push({ op: 'delete', key });
  }
  ops.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { ops, compares: ops.map((o) => ({ key: o.key, revision: current[o.key]?.revision ?? 0 })) };
}
