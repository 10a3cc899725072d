// Multi-device test networks: every device of a test zone runs in its own network namespace, so LANs, NAT and a cable
// pulled out of a device are real kernel events rather than mocks. How it is laid out, and how to remove leftovers by
// hand, is in docs/testing.md.
import { spawn as spawnProcess, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';

export type Site = 'home' | 'public';

export interface NetSpec {
  devices: { name: string; site?: Site }[];
  /** true: home devices sit behind a NAT router namespace (nftables masquerade) on their own LAN, public devices on
   *  the "internet" segment; false (default): every device on one flat LAN. */
  nat?: boolean;
  /** Also attach the test process itself (the root namespace) at this site, so it can reach devices with fetch() or
   *  node:net directly: at home it reaches the LAN (and, behind NAT, the internet through the router); in public only
   *  the internet segment. Off by default, because it adds a link and a route to the host's own namespace. */
  host?: Site;
}

export interface NetDevice {
  name: string;
  ns: string;
  ip: string;
  site: Site;
}

export interface NetRouter {
  ns: string;
  /** The router's address on the home LAN: home devices' default gateway. */
  homeIp: string;
  /** The router's address on the internet segment: what public devices see as the source of home connections. */
  publicIp: string;
}

export interface TestNet {
  id: string;
  devices: Map<string, NetDevice>;
  /** CIDRs of the home LAN and, with nat, of the internet segment. */
  subnets: { home: string; public: string | null };
  /** The NAT router, when the spec asked for nat. */
  router: NetRouter | null;
  /** The test process's own address on the net, when the spec asked for host. */
  hostIp: string | null;
  device(name: string): NetDevice;
  /** Runs a command inside the device's namespace; resolves stdout, rejects with a NetExecError carrying stderr and
   *  the exit code. env is added to this process's environment; input is written to the command's stdin. */
  exec(
    name: string,
    cmd: string,
    args: string[],
    opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string },
  ): Promise<string>;
  /** Long-running process inside the namespace, in its own process group; tracked, and killed by destroy(). opts.env
   *  is added to this process's environment. */
  spawn(name: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** SIGKILL every process in the device's namespace (a power cut), waiting until they are gone. */
  killAll(name: string): Promise<void>;
  /** Takes the device's link down from outside the device (the device cannot undo it); restore() brings it back. */
  cut(name: string): Promise<void>;
  restore(name: string): Promise<void>;
  /** Idempotent: kills tracked and in-namespace processes, removes namespaces, links, bridges and nft tables. */
  destroy(): Promise<void>;
}

/** A command in a device's namespace that failed: its exit code (null when killed), signal and output. */
export class NetExecError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'NetExecError';
  }
}

/** Every namespace and root-side link of a net starts with this (its nft table with `bkt_`), so leftovers are easy
 *  to find. */
export const NET_PREFIX = 'bkt-';
/** One claim file per live net, `<id>.json`, naming its owner process and what it created. */
export const REGISTRY_DIR = '/run/buckyos-testnet';

const EXEC_TIMEOUT_MS = 60_000;
const SETUP_TIMEOUT_MS = 30_000;
const SETTLE_TIMEOUT_MS = 10_000;
const POLL_MS = 10;
// Slots are /23 blocks 10.X.Y.0/23 with X in 200..254 and Y even: the home LAN is 10.X.Y.0/24, the internet segment
// 10.X.(Y+1).0/24. The slot number in hex is the net's id, so claiming the id claims the addresses.
const SLOT_FIRST_OCTET = 200;
const SLOTS = 55 * 128;
const FIRST_DEVICE_HOST = 10;
const LAST_DEVICE_HOST = 253;
const ROUTER_HOST = 1;
const HOST_HOST = 2;
// Device names become part of a hub interface name, `d-<name>`, which the kernel caps at 15 characters.
const DEVICE_NAME = /^[a-z][a-z0-9-]{0,12}$/;
// CapEff bits: creating a namespace needs NET_ADMIN, mounting it under /run/netns needs SYS_ADMIN.
const REQUIRED_CAPS: [number, string][] = [
  [12, 'CAP_NET_ADMIN'],
  [21, 'CAP_SYS_ADMIN'],
];

function findBinary(name: string): string | null {
  const dirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)];
  for (const dir of dirs) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  return null;
}

const IP = findBinary('ip');
const NFT = findBinary('nft');

/** Why network namespaces cannot be created here, or null when they can. */
export function netnsUnavailableReason(): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux, this is ${process.platform}`;
  if (!IP) return 'the ip command (iproute2) is not installed';
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const caps = capEff ? BigInt(`0x${capEff[1]}`) : 0n;
  const missing = REQUIRED_CAPS.filter(([bit]) => ((caps >> BigInt(bit)) & 1n) === 0n).map(([, cap]) => cap);
  if (missing.length > 0) return `creating network namespaces needs ${missing.join(' and ')} (run the tests as root)`;
  return null;
}

/** False where network namespaces cannot be created (not root, no CAP_NET_ADMIN); tests then skip with that reason. */
export function netnsAvailable(): boolean {
  return netnsUnavailableReason() === null;
}

function ipBin(): string {
  if (!IP) throw new Error('the ip command (iproute2) is not installed');
  return IP;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}

/** A command line for error messages: long arguments (inline scripts) would drown the reason. */
function describeCommand(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (a.length > 60 ? `${a.slice(0, 57)}...` : a)).join(' ');
}

interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/** Runs a command to completion in its own process group, so a timeout kills whatever it started too. */
function runProcess(
  file: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs: number; onSpawn?: (child: ChildProcess) => void },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnProcess(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env,
      detached: true,
    });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, opts.timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) {
      // A command that exits without reading its input is judged by its exit code, not by the broken pipe.
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code, signal, timedOut });
    });
  });
}

/** Runs a setup command in the root namespace; rejects naming the command and its stderr. */
async function run(file: string, args: string[], input?: string): Promise<string> {
  const r = await runProcess(file, args, { input, timeoutMs: SETUP_TIMEOUT_MS });
  if (r.code === 0) return r.stdout;
  const how = r.timedOut ? `timed out after ${SETUP_TIMEOUT_MS} ms` : `failed with exit code ${r.code ?? r.signal}`;
  throw new Error(`${describeCommand(file, args)} ${how}: ${r.stderr.trim()}`);
}

function listNamespaces(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

function parsePids(out: string): number[] {
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((p) => Number.isInteger(p) && p > 0);
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Exited between listing and killing.
    }
  }
}

/** SIGKILLs everything in a namespace until nothing is left (processes may fork while they are being killed). */
async function emptyNamespace(ns: string): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const pids = parsePids(await run(ipBin(), ['netns', 'pids', ns]));
    if (pids.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`processes ${pids.join(', ')} in namespace ${ns} survived SIGKILL for ${SETTLE_TIMEOUT_MS} ms`);
    }
    killPids(pids);
    await sleep(POLL_MS);
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function namespacePidsSync(ns: string): number[] {
  try {
    const out = execFileSync(ipBin(), ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return parsePids(out);
  } catch {
    // The namespace went away meanwhile.
    return [];
  }
}

/** The synchronous teardown used where nothing can be awaited (process exit, signals) and for dead owners' nets.
 *  Best effort: whatever survives SIGKILL keeps its namespace alive after the name is removed, so it is not waited
 *  for beyond the settle timeout. */
function removeSync(namespaces: string[], hostLink: string | null): void {
  const ip = ipBin();
  const present = new Set(listNamespaces());
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (const ns of namespaces.filter((n) => present.has(n))) {
    for (let pids = namespacePidsSync(ns); pids.length > 0 && Date.now() < deadline; pids = namespacePidsSync(ns)) {
      killPids(pids);
      sleepSync(POLL_MS);
    }
  }
  if (hostLink) {
    try {
      execFileSync(ip, ['link', 'del', hostLink], { stdio: 'ignore' });
    } catch {
      // Already removed with its peer.
    }
  }
  for (const ns of namespaces.filter((n) => present.has(n))) {
    try {
      execFileSync(ip, ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // Another process removed it first.
    }
  }
}

interface Claim {
  pid: number;
  /** The owner's start time from /proc/<pid>/stat, so a recycled pid does not keep a dead owner's net alive. */
  start: string;
  namespaces: string[];
  hostLink: string | null;
}

function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Field 3 (state) is the first after the command name; field 22 is the start time.
    return fields[0] === 'Z' ? null : (fields[19] ?? null);
  } catch {
    return null;
  }
}

function claimPath(id: string): string {
  return join(REGISTRY_DIR, `${id}.json`);
}

function readClaims(): Map<string, Claim | null> {
  const claims = new Map<string, Claim | null>();
  let files: string[];
  try {
    files = readdirSync(REGISTRY_DIR);
  } catch {
    return claims;
  }
  for (const file of files.filter((f) => f.endsWith('.json'))) {
    try {
      claims.set(file.slice(0, -'.json'.length), JSON.parse(readFileSync(join(REGISTRY_DIR, file), 'utf8')) as Claim);
    } catch {
      claims.set(file.slice(0, -'.json'.length), null);
    }
  }
  return claims;
}

function netIdOf(ns: string): string {
  return ns.slice(NET_PREFIX.length, NET_PREFIX.length + 4);
}

/**
 * Removes the nets of test processes that died without cleaning up (SIGKILL, a crash, a lost machine), and any
 * `bkt-` namespace no live net claims. Returns the namespaces it removed. startNet calls it first.
 */
export function removeLeftoverNets(): string[] {
  // Namespaces are listed before claims are read: a net writes its claim before creating any namespace, so every
  // namespace seen here whose owner is alive has a claim by the time the claims are read.
  const namespaces = listNamespaces().filter((n) => n.startsWith(NET_PREFIX));
  const claims = readClaims();
  const liveIds = new Set<string>();
  for (const [id, claim] of claims) {
    if (claim && processStart(claim.pid) === claim.start) liveIds.add(id);
  }
  const orphans = namespaces.filter((ns) => !liveIds.has(netIdOf(ns)));
  for (const [id, claim] of claims) {
    if (liveIds.has(id)) continue;
    removeSync(
      orphans.filter((ns) => netIdOf(ns) === id),
      claim?.hostLink ?? null,
    );
    rmSync(claimPath(id), { force: true });
  }
  removeSync(
    orphans.filter((ns) => !claims.has(netIdOf(ns))),
    null,
  );
  return orphans;
}

interface Ipv4Prefix {
  addr: number;
  len: number;
}

function ipv4(text: string): number {
  return text.split('.').reduce((acc, octet) => (acc << 8) + Number(octet), 0) >>> 0;
}

function overlaps(a: Ipv4Prefix, b: Ipv4Prefix): boolean {
  const len = Math.min(a.len, b.len);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return ((a.addr & mask) >>> 0) === ((b.addr & mask) >>> 0);
}

/** Every IPv4 prefix the host already routes or owns, except the default route, which overlaps everything. */
async function hostPrefixes(): Promise<Ipv4Prefix[]> {
  const routes = JSON.parse(await run(ipBin(), ['-j', '-4', 'route', 'show', 'table', 'all'])) as { dst?: string }[];
  return routes
    .map((r) => r.dst)
    .filter((dst): dst is string => dst !== undefined && dst !== 'default')
    .map((dst) => {
      const [addr, len] = dst.split('/');
      return { addr: ipv4(addr), len: len === undefined ? 32 : Number(len) };
    });
}

function slotBase(slot: number): string {
  return `10.${SLOT_FIRST_OCTET + Math.floor(slot / 128)}`;
}

function homeSubnet(slot: number): string {
  return `${slotBase(slot)}.${(slot % 128) * 2}`;
}

function publicSubnet(slot: number): string {
  return `${slotBase(slot)}.${(slot % 128) * 2 + 1}`;
}

/** Picks a free slot and claims it atomically: the claim file appears complete or not at all, and only one process
 *  can create it. Only a net linked to the host has to keep clear of the host's own routes; the others never meet
 *  them, and a host that routes all of 10/8 can still run them. */
async function claimSlot(
  namesFor: (id: string) => { namespaces: string[]; hostLink: string | null },
  linkedToHost: boolean,
): Promise<number> {
  const taken = linkedToHost ? await hostPrefixes() : [];
  mkdirSync(REGISTRY_DIR, { recursive: true });
  const start = processStart(process.pid);
  if (start === null) throw new Error(`cannot read this process's start time from /proc/${process.pid}/stat`);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const slot = randomInt(SLOTS);
    if (taken.some((p) => overlaps(p, { addr: ipv4(`${homeSubnet(slot)}.0`), len: 23 }))) continue;
    const id = slot.toString(16).padStart(4, '0');
    const claim: Claim = { pid: process.pid, start, ...namesFor(id) };
    const tmp = join(REGISTRY_DIR, `.${id}.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify(claim));
    try {
      linkSync(tmp, claimPath(id));
      return slot;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  throw new Error(
    `no free test network slot in 10.${SLOT_FIRST_OCTET}.0.0-10.254.255.255: all are claimed` +
      (linkedToHost ? ' or overlap the host\'s routes' : ''),
  );
}

interface NetState {
  id: string;
  namespaces: string[];
  hostLink: string | null;
  children: Map<ChildProcess, string | null>;
}

/** Nets of this process not yet destroyed, torn down synchronously if the process exits or is told to stop. */
const liveNets = new Set<NetState>();
let exitHooksInstalled = false;

function teardownSync(state: NetState): void {
  for (const child of state.children.keys()) killGroup(child);
  removeSync(state.namespaces, state.hostLink);
  rmSync(claimPath(state.id), { force: true });
}

function onStopSignal(signal: NodeJS.Signals): void {
  for (const state of liveNets) teardownSync(state);
  liveNets.clear();
  // Listening for a signal replaces Node's default of dying from it; restore that unless someone else handles it.
  if (process.listenerCount(signal) === 1) {
    process.removeListener(signal, onStopSignal);
    process.kill(process.pid, signal);
  }
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const state of liveNets) teardownSync(state);
  });
  process.on('SIGINT', onStopSignal);
  process.on('SIGTERM', onStopSignal);
}

interface PlannedDevice extends NetDevice {
  bridge: string;
  gateway: string | null;
}

function validateSpec(spec: NetSpec): void {
  if (spec.devices.length === 0) throw new Error('a test net needs at least one device, the spec lists none');
  const seen = new Set<string>();
  const perSegment = { home: 0, public: 0 };
  for (const { name, site = 'home' } of spec.devices) {
    if (!DEVICE_NAME.test(name)) {
      throw new Error(`device name "${name}" must be 1-13 characters of a-z, 0-9 and -, starting with a letter`);
    }
    if (seen.has(name)) throw new Error(`device name "${name}" appears twice in the spec`);
    if (site !== 'home' && site !== 'public') {
      throw new Error(`device "${name}" has site "${String(site)}", not home or public`);
    }
    seen.add(name);
    perSegment[segmentOf(spec, site)]++;
  }
  const room = LAST_DEVICE_HOST - FIRST_DEVICE_HOST + 1;
  for (const segment of ['home', 'public'] as const) {
    if (perSegment[segment] > room) {
      throw new Error(`${perSegment[segment]} devices on the ${segment} segment, at most ${room} fit`);
    }
  }
  if (spec.host !== undefined && spec.host !== 'home' && spec.host !== 'public') {
    throw new Error(`host site "${String(spec.host)}" is neither home nor public`);
  }
}

/** Without NAT there is one segment, so every device sits on the home LAN whatever its site. */
function segmentOf(spec: NetSpec, site: Site): Site {
  return spec.nat && site === 'public' ? 'public' : 'home';
}

function plan(spec: NetSpec, id: string, slot: number): PlannedDevice[] {
  const next = { home: FIRST_DEVICE_HOST, public: FIRST_DEVICE_HOST };
  return spec.devices.map(({ name, site = 'home' }) => {
    const segment = segmentOf(spec, site);
    const subnet = segment === 'home' ? homeSubnet(slot) : publicSubnet(slot);
    return {
      name,
      site,
      ns: `${NET_PREFIX}${id}-${name}`,
      ip: `${subnet}.${next[segment]++}`,
      bridge: `br-${segment}`,
      gateway: spec.nat && segment === 'home' ? `${subnet}.${ROUTER_HOST}` : null,
    };
  });
}

function natRuleset(table: string): string {
  return `table ip ${table} {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "wan0" masquerade
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
  }
}
`;
}

/** The nft table a net's router holds; named after the net so a stray copy anywhere identifies its owner. */
export function natTableName(id: string): string {
  return `bkt_${id}`;
}

async function linkState(ns: string, ifname: string): Promise<{ operstate: string; bridgeState: string | null }> {
  const [link] = JSON.parse(await run(ipBin(), ['-n', ns, '-d', '-j', 'link', 'show', 'dev', ifname])) as {
    operstate: string;
    linkinfo?: { info_slave_data?: { state?: string } };
  }[];
  return { operstate: link.operstate, bridgeState: link.linkinfo?.info_slave_data?.state ?? null };
}

export async function startNet(spec: NetSpec): Promise<TestNet> {
  const unavailable = netnsUnavailableReason();
  if (unavailable) throw new Error(`cannot start a test net: ${unavailable}`);
  const ip = ipBin();
  if (spec.nat && !NFT) throw new Error('a test net with nat needs the nft command (nftables), which is not installed');
  validateSpec(spec);
  installExitHooks();
  removeLeftoverNets();

  const infraNames = (id: string) => ({
    hub: `${NET_PREFIX}${id}.hub`,
    router: spec.nat ? `${NET_PREFIX}${id}.router` : null,
  });
  const namesFor = (id: string) => {
    const { hub, router } = infraNames(id);
    const devices = spec.devices.map((d) => `${NET_PREFIX}${id}-${d.name}`);
    return {
      namespaces: [...devices, ...(router ? [router] : []), hub],
      hostLink: spec.host ? `${NET_PREFIX}${id}` : null,
    };
  };
  const slot = await claimSlot(namesFor, spec.host !== undefined);
  const id = slot.toString(16).padStart(4, '0');
  const { hub, router } = infraNames(id);
  const planned = plan(spec, id, slot);
  const homeNet = homeSubnet(slot);
  const publicNet = spec.nat ? publicSubnet(slot) : null;
  const routerInfo: NetRouter | null = router
    ? { ns: router, homeIp: `${homeNet}.${ROUTER_HOST}`, publicIp: `${publicNet}.${ROUTER_HOST}` }
    : null;
  const hostSegment = spec.host === 'public' && publicNet ? publicNet : homeNet;
  const hostIp = spec.host ? `${hostSegment}.${HOST_HOST}` : null;

  const state: NetState = { id, ...namesFor(id), children: new Map() };
  liveNets.add(state);
  const devices = new Map<string, NetDevice>(
    planned.map(({ name, ns, ip: addr, site }) => [name, { name, ns, ip: addr, site }]),
  );
  let destroying: Promise<void> | null = null;

  const device = (name: string): NetDevice => {
    const d = devices.get(name);
    if (!d) throw new Error(`test net ${id} has no device "${name}" (it has ${[...devices.keys()].join(', ')})`);
    return d;
  };
  const assertLive = (what: string): void => {
    if (destroying) throw new Error(`cannot ${what}: test net ${id} is destroyed`);
  };
  const track = (child: ChildProcess, owner: string | null): void => {
    state.children.set(child, owner);
    const forget = () => state.children.delete(child);
    child.once('exit', forget);
    child.once('error', forget);
  };

  const teardown = async (): Promise<void> => {
    liveNets.delete(state);
    const problems: string[] = [];
    const attempt = async (step: Promise<unknown>) => {
      try {
        await step;
      } catch (err) {
        problems.push((err as Error).message);
      }
    };
    const children = [...state.children.keys()];
    for (const child of children) killGroup(child);
    const present = new Set(listNamespaces());
    const existing = state.namespaces.filter((ns) => present.has(ns));
    await Promise.all(existing.map((ns) => attempt(emptyNamespace(ns))));
    // Deleting a namespace frees its links asynchronously; the host's side is deleted now so it is gone on return.
    if (state.hostLink && existsSync(`/sys/class/net/${state.hostLink}`)) {
      await attempt(run(ip, ['link', 'del', state.hostLink]));
    }
    for (const ns of existing) await attempt(run(ip, ['netns', 'del', ns]));
    await Promise.all(children.map(exited));
    if (problems.length > 0) {
      // The claim stays, so the next startNet after this process is gone removes what is left.
      throw new Error(`destroying test net ${id} left things behind: ${problems.join('; ')}`);
    }
    rmSync(claimPath(id), { force: true });
  };

  const net: TestNet = {
    id,
    devices,
    subnets: { home: `${homeNet}.0/24`, public: publicNet ? `${publicNet}.0/24` : null },
    router: routerInfo,
    hostIp,
    device,

    async exec(name, cmd, args, opts = {}) {
      const d = device(name);
      assertLive(`run ${cmd} on ${name}`);
      const timeoutMs = opts.timeoutMs ?? EXEC_TIMEOUT_MS;
      const r = await runProcess(ip, ['netns', 'exec', d.ns, cmd, ...args], {
        input: opts.input,
        env: { ...process.env, ...opts.env },
        timeoutMs,
        onSpawn: (child) => track(child, name),
      });
      if (r.code === 0) return r.stdout;
      const how = r.timedOut
        ? `timed out after ${timeoutMs} ms and was killed`
        : r.code === null
          ? `was killed by ${r.signal}`
          : `exited with code ${r.code}`;
      const message = `${name}: ${describeCommand(cmd, args)} ${how}: ${r.stderr.trim()}`;
      throw new NetExecError(message, r.code, r.signal, r.stdout, r.stderr);
    },

    spawn(name, cmd, args, opts = {}) {
      const d = device(name);
      assertLive(`start ${cmd} on ${name}`);
      const child = spawnProcess(ip, ['netns', 'exec', d.ns, cmd, ...args], {
        ...opts,
        env: { ...process.env, ...opts.env },
        // Its own process group, so destroy() and killAll() also reach whatever it starts.
        detached: true,
      });
      track(child, name);
      return child;
    },

    async killAll(name) {
      const d = device(name);
      assertLive(`kill the processes of ${name}`);
      const children = [...state.children].filter(([, owner]) => owner === name).map(([child]) => child);
      for (const child of children) killGroup(child);
      await emptyNamespace(d.ns);
      await Promise.all(children.map(exited));
    },

    async cut(name) {
      device(name);
      assertLive(`cut ${name}`);
      await run(ip, ['-n', hub, 'link', 'set', `d-${name}`, 'down']);
    },

    async restore(name) {
      const d = device(name);
      assertLive(`restore ${name}`);
      await run(ip, ['-n', hub, 'link', 'set', `d-${name}`, 'up']);
      // Done when the bridge forwards the port again and the device sees its carrier, so the next packet goes through.
      const deadline = Date.now() + SETTLE_TIMEOUT_MS;
      for (;;) {
        const [port, eth] = await Promise.all([linkState(hub, `d-${name}`), linkState(d.ns, 'eth0')]);
        if (port.bridgeState === 'forwarding' && eth.operstate === 'UP') return;
        if (Date.now() > deadline) {
          throw new Error(
            `${name}'s link did not come back within ${SETTLE_TIMEOUT_MS} ms: bridge port ${port.bridgeState}, eth0 ${eth.operstate}`,
          );
        }
        await sleep(POLL_MS);
      }
    },

    destroy() {
      destroying ??= teardown();
      return destroying;
    },
  };

  try {
    for (const ns of state.namespaces) await run(ip, ['netns', 'add', ns]);
    const hubCmds = ['link set lo up', 'link add br-home type bridge', 'link set br-home up'];
    if (router) hubCmds.push('link add br-public type bridge', 'link set br-public up');
    const attach = (hubIf: string, peer: string, peerNs: string, bridge: string) =>
      hubCmds.push(
        `link add ${hubIf} type veth peer name ${peer} netns ${peerNs}`,
        `link set ${hubIf} master ${bridge}`,
        `link set ${hubIf} up`,
      );
    for (const d of planned) attach(`d-${d.name}`, 'eth0', d.ns, d.bridge);
    if (router) {
      attach('r-home', 'lan0', router, 'br-home');
      attach('r-public', 'wan0', router, 'br-public');
    }
    if (state.hostLink) {
      // Created from the root side, since the host's end has to stay there; the hub batch then plugs in the other end.
      await run(ip, ['link', 'add', state.hostLink, 'type', 'veth', 'peer', 'name', 'host', 'netns', hub]);
      const bridge = spec.host === 'public' && router ? 'br-public' : 'br-home';
      hubCmds.push(`link set host master ${bridge}`, 'link set host up');
    }
    await run(ip, ['-n', hub, '-batch', '-'], hubCmds.join('\n') + '\n');

    const setups = planned.map((d) =>
      run(
        ip,
        ['-n', d.ns, '-batch', '-'],
        [
          'link set lo up',
          `addr add ${d.ip}/24 dev eth0`,
          'link set eth0 up',
          // A default route makes the device look like an ordinary host, e.g. to code that finds its own address by
          // connecting a UDP socket to some outside address.
          d.gateway ? `route add default via ${d.gateway}` : 'route add default dev eth0',
        ].join('\n') + '\n',
      ),
    );
    if (router && routerInfo) {
      setups.push(
        run(
          ip,
          ['-n', router, '-batch', '-'],
          [
            'link set lo up',
            `addr add ${routerInfo.homeIp}/24 dev lan0`,
            'link set lan0 up',
            `addr add ${routerInfo.publicIp}/24 dev wan0`,
            'link set wan0 up',
          ].join('\n') + '\n',
        ),
        // /proc/sys/net belongs to the namespace of whoever opens it, so forwarding is switched on from inside.
        run(ip, ['netns', 'exec', router, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']),
        run(ip, ['netns', 'exec', router, NFT!, '-f', '-'], natRuleset(natTableName(id))),
      );
    }
    await Promise.all(setups);
    if (state.hostLink && hostIp) {
      await run(ip, ['addr', 'add', `${hostIp}/24`, 'dev', state.hostLink]);
      await run(ip, ['link', 'set', state.hostLink, 'up']);
      if (routerInfo && publicNet && spec.host === 'home') {
        await run(ip, ['route', 'add', `${publicNet}.0/24`, 'via', routerInfo.homeIp, 'dev', state.hostLink]);
      }
    }
  } catch (err) {
    try {
      await net.destroy();
    } catch (cleanupErr) {
      throw new AggregateError([err, cleanupErr], `starting test net ${id} failed, and so did removing it`);
    }
    throw err;
  }
  return net;
}
