// etcd control (DESIGN §4, docs/etcd-control.md): node_daemon's part in where the zone's configuration store lives.
// It follows the control records under system/control/, runs this device's etcd member when the zone forms or keeps
// an etcd cluster, switches the device's own system-config between backends, and, on the device that holds the store,
// carries out a move: form the cluster, freeze writes, copy every key, verify, record the new store, switch.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { type ConfigBackendKind, type KernelServiceName, type NodePaths, loadNodeConfig, saveNodeConfig } from '../../lib/config/node-config.ts';
import {
  CONFIG_STORE_KEY, type ConfigStoreRecord, type EtcdMemberRecord, FREEZE_KEY, MIGRATION_KEY, type MigrationRecord, configStoreSchema,
  migrationSchema, parseRecord,
} from '../../lib/config/store-control.ts';
import type { ClusterHealth } from '../../lib/etcd/cluster.ts';
import type { EtcdMember, EtcdMemberSpec } from '../../lib/etcd/member.ts';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { IDENTITY_FILES } from '../../lib/identity/node-identity.ts';
import { enrolPeerSchema } from '../../lib/identity/names.ts';
import { loadKeyFile, writeFileAtomic } from '../../lib/identity/keys.ts';
import { createClient } from '../../lib/krpc/index.ts';
import { readTextIfExists } from '../../lib/read-if-exists.ts';
import { TunnelClient, type TunnelPeer, deviceTunnelCert, tunnelTransport } from '../../lib/tunnel/index.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { collectDeviceInfo } from '../../lib/sysinfo.ts';
import type { KernelRuntime } from '../runtime.ts';

// What runs an etcd member, certifies it and copies stores is loaded only when needed: most devices never do any of
// it, and the etcd client and SQLite bindings would cost every node_daemon tens of megabytes.
const etcdCluster = () => import('../../lib/etcd/cluster.ts');
const etcdMember = () => import('../../lib/etcd/member.ts');
const tlsCerts = () => import('../../lib/identity/tls-certs.ts');
const stores = () => import('../system-config/main.ts');

export const PEER_PORT = 2380;
export const CLIENT_PORT = 2379;
/** A core device counts as online for forming a cluster when it reported within this window. */
const ONLINE_MS = 90_000;
const FORM_TIMEOUT_MS = 120_000;
/** Writes that passed the freeze check just before the freeze landed finish within this. */
const FREEZE_SETTLE_MS = 1500;
const COPY_ATTEMPTS = 3;
/** How long a member added for a device may stay unstarted before it is taken out of the cluster again. */
const UNSTARTED_GRACE_MS = 5 * 60_000;

const peerListSchema = z.array(enrolPeerSchema);

/** How long a member's store must have stayed silent before the other core devices are asked where it went, and how
 * often they are asked again. */
const ASK_WHERE_STORE_AFTER_MS = 60_000;
const ASK_WHERE_STORE_EVERY_MS = 30_000;

export interface StoreControlHost {
  paths: NodePaths;
  log: Logger;
  /** The runtime of the kernel now running (it changes when the device switches backends). */
  runtime(): KernelRuntime;
  backend(): ConfigBackendKind;
  stopService(name: KernelServiceName): Promise<void>;
  /** Stops a kernel service and starts it again, reading the node config on disk anew. */
  restartService(name: KernelServiceName): Promise<void>;
  /** Stops every kernel service and boots again with the node config on disk. */
  reboot(why: string): Promise<void>;
}

interface Files {
  dir: string;
  data: string;
  spec: string;
  ca: string;
  cert: string;
  log: string;
  /** The other member devices, as last known while the cluster ran (noteCores). */
  cores: string;
}

function files(paths: NodePaths): Files {
  const dir = join(paths.data, 'etcd');
  return {
    dir,
    data: join(dir, 'data'),
    spec: join(dir, 'member.json'),
    ca: join(paths.etc, 'etcd', 'ca.pem'),
    cert: join(paths.etc, 'etcd', 'member.pem'),
    log: join(paths.logs, 'etcd', 'etcd.log'),
    cores: join(paths.etc, 'etcd', 'cores.json'),
  };
}

const specSchema = z.object({
  name: z.string(),
  dataDir: z.string(),
  peerUrl: z.string(),
  clientUrls: z.array(z.string()),
  initialCluster: z.array(z.object({ name: z.string(), peerUrl: z.string() })),
  state: z.enum(['new', 'existing']),
  clusterToken: z.string(),
  tls: z.object({ certFile: z.string(), keyFile: z.string(), caFile: z.string() }).optional(),
});

/** Resolves after `ms`, or at once when `signal` aborts (the daemon stopping). */
const sleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal }).catch(() => undefined);

/** How many members `devices` core devices should make: an odd number, at most seven (an even count adds a member
 * that quorum needs without adding tolerance). */
export function clusterSize(devices: number): number {
  return Math.min(7, devices % 2 === 0 ? devices - 1 : devices);
}

/** The members a new cluster starts with: the orchestrator first, the rest by name. */
export function pickMembers(online: { name: string; ip: string }[], self: string): { name: string; ip: string }[] {
  const sorted = [...online].sort((a, b) => (a.name === self ? -1 : b.name === self ? 1 : a.name < b.name ? -1 : 1));
  return sorted.slice(0, clusterSize(sorted.length));
}

/**
 * Members that were added to the cluster but have not started (etcd lists them without a name), and since when each
 * was first seen so: one overdue after `graceMs` is to be removed. One that starts, or goes, is forgotten; seen
 * unstarted again later, its grace starts afresh.
 */
export class UnstartedMembers {
  private readonly since = new Map<string, number>();

  constructor(private readonly graceMs: number) {}

  /** Given the cluster's members now, those unstarted for `graceMs` or more. */
  overdue<M extends { id: string; name: string }>(members: readonly M[], now: number): M[] {
    const unstarted = members.filter((m) => m.name === '');
    for (const id of [...this.since.keys()]) if (!unstarted.some((m) => m.id === id)) this.since.delete(id);
    for (const m of unstarted) if (!this.since.has(m.id)) this.since.set(m.id, now);
    return unstarted.filter((m) => now - this.since.get(m.id)! >= this.graceMs);
  }
}

export class StoreControl {
  private member: EtcdMember | null = null;
  private readonly f: Files;
  private queue: Promise<void> = Promise.resolve();
  private readonly stop = new AbortController();
  private busy = false;
  private retry: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private last: { migration: MigrationRecord | null; store: ConfigStoreRecord | null } = { migration: null, store: null };
  private readonly unstarted = new UnstartedMembers(UNSTARTED_GRACE_MS);
  /** A move recorded as done onto this device's SQLite file that the file does not hold: reported once. */
  private reportedUnfinished = false;
  /** Since when the store has not answered store control (null while it does), and when others were last asked. */
  private unansweredSince: number | null = null;
  private askedWhereAt = 0;

  constructor(private readonly host: StoreControlHost) {
    this.f = files(host.paths);
  }

  private get self(): string {
    return this.host.runtime().identity.device.name;
  }

  /** Starts this device's member from its saved spec, if it has one: system-config on etcd needs it first. */
  async startSavedMember(): Promise<void> {
    if (!existsSync(this.f.spec)) return;
    await this.runMember(this.savedSpec());
  }

  /** The spec of the member this device last ran (it throws when there is none or it cannot be read). */
  private savedSpec(): EtcdMemberSpec {
    return specSchema.parse(JSON.parse(readFileSync(this.f.spec, 'utf8'))) as EtcdMemberSpec;
  }

  /** Follows the control records for as long as the daemon runs. */
  follow(): void {
    void this.watchLoop();
    this.timer = setInterval(() => {
      this.enqueue(() => this.maybeAutoMove());
      this.enqueue(() => this.pruneRemovedMembers());
      this.enqueue(() => this.growMembers());
      this.enqueue(() => this.noteCores());
    }, 10_000);
  }

  async close(): Promise<void> {
    this.stop.abort();
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.queue.catch(() => undefined);
    await this.member?.stop();
    this.member = null;
  }

  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((err) => this.host.log.error({ err: (err as Error).message }, 'store control step failed'));
  }

  private async watchLoop(): Promise<void> {
    let rev = 0;
    while (!this.stop.signal.aborted) {
      try {
        const cfg = this.host.runtime().configClient();
        if (rev === 0) {
          const listed = await cfg.list({ prefix: 'system/control/' });
          const get = (k: string) => listed.entries.find((e) => e.key === k)?.value ?? null;
          this.last = { migration: parseRecord(migrationSchema, get(MIGRATION_KEY)), store: parseRecord(configStoreSchema, get(CONFIG_STORE_KEY)) };
          rev = listed.revision;
          this.enqueue(() => this.reactOrRetry());
        }
        const w = await cfg.watch({ prefix: 'system/control/', after_revision: rev, timeout_ms: 20_000 }, { timeoutMs: 30_000 });
        let changed = false;
        for (const ev of w.events) {
          if (ev.key === MIGRATION_KEY) this.last.migration = parseRecord(migrationSchema, ev.value);
          else if (ev.key === CONFIG_STORE_KEY) this.last.store = parseRecord(configStoreSchema, ev.value);
          else continue;
          changed = true;
        }
        rev = w.revision;
        this.storeAnswered();
        if (changed) this.enqueue(() => this.reactOrRetry());
      } catch (err) {
        if (this.stop.signal.aborted) return;
        this.host.log.debug({ err: (err as Error).message }, 'store control watch failed; listing again');
        rev = 0;
        if (this.storeSilent()) this.enqueue(() => this.leaveIfMoved());
        await sleep(2000);
      }
    }
  }

  /**
   * A step that failed (a device not reachable yet, a member slow to start) is tried again until it holds. One retry
   * at most is pending: every failure of a long outage (each watch event and relisting reacts too) would otherwise
   * start a chain of its own.
   */
  private async reactOrRetry(): Promise<void> {
    try {
      await this.react();
    } catch (err) {
      if (this.retry) return;
      this.host.log.warn({ err: (err as Error).message }, 'store control step failed; trying again in 5 s');
      this.retry = setTimeout(() => {
        this.retry = null;
        this.enqueue(() => this.reactOrRetry());
      }, 5000);
      this.retry.unref();
    }
  }

  /** Brings this device in line with the records: a member to run or stop, a backend to switch to, a move to make. */
  private async react(): Promise<void> {
    if (this.busy) return;
    const { migration: m, store: c } = this.last;
    const me = this.self;
    const kind = this.host.backend();
    if (m?.state === 'requested' && m.to === 'etcd' && kind === 'sqlite') return this.guarded(() => this.moveToEtcd(m));
    // A move back names the device that will hold the store; without one, no device may take it (each would).
    if (m?.state === 'requested' && m.to === 'sqlite' && kind === 'etcd' && m.primary === me) return this.guarded(() => this.moveToSqlite(m));
    // One naming a device that is no member could never be carried out, and would block every later move: the first
    // member by name refuses it.
    const names = c?.backend === 'etcd' ? c.members.map((x) => x.name) : [];
    if (m?.state === 'requested' && m.to === 'sqlite' && kind === 'etcd' && names.length > 0 && !names.includes(m.primary ?? '') && [...names].sort()[0] === me) {
      await this.writeMigration({ ...m, state: 'failed', error: `${m.primary ?? 'no device'} is not a member of the etcd cluster (${names.join(', ')}): only a member can hold the store` });
    }
    // This device copied the store to SQLite and recorded it in etcd, then stopped before switching over itself (etcd
    // still says `copying`: the done record is in the new file only).
    if (c?.backend === 'sqlite' && c.primary === me && kind === 'etcd') return this.guarded(() => this.finishMoveToSqlite(c, m));
    // This device was copying when it stopped (a crash, a power cut): the move is over, and the freeze must go.
    if ((m?.state === 'copying' || m?.state === 'forming') && m.orchestrator === me) {
      return this.guarded(() => this.abandonMove('the device moving the store restarted before the move was done'));
    }
    if (m?.state === 'forming' && m.members?.some((x) => x.name === me) && m.token && m.ca_cert) {
      await this.ensureMember(m.members, m.token, m.ca_cert, 'new');
    }
    if (m?.state === 'failed' && c?.backend !== 'etcd' && this.member) await this.dropMember();
    if (c?.backend === 'etcd' && c.members.some((x) => x.name === me)) {
      await this.ensureMember(c.members, c.token, c.ca_cert, 'existing');
      if (kind !== 'etcd') await this.switchToEtcd(c.members);
      else await this.followMembers(c.members);
      await this.noteCores();
    }
    if (c?.backend === 'sqlite' && c.primary !== me && kind === 'etcd') await this.switchToRemote(c.primary);
  }

  private async guarded(fn: () => Promise<void>): Promise<void> {
    this.busy = true;
    try {
      await fn();
    } finally {
      this.busy = false;
    }
  }

  /** Lifts the freeze in the store this device uses now and marks the move failed; members formed for it stop. */
  private async abandonMove(why: string): Promise<void> {
    // Read again from the store this device uses now: a record seen before a move that has since succeeded (and
    // switched this device to the new store) is history, not a move to abandon.
    const cfg = this.host.runtime().configClient();
    const current = await cfg.get({ key: MIGRATION_KEY });
    const m = parseRecord(migrationSchema, current.value);
    const store = parseRecord(configStoreSchema, (await cfg.get({ key: CONFIG_STORE_KEY })).value);
    if (!m || (m.state !== 'copying' && m.state !== 'forming') || m.orchestrator !== this.self) return;
    if ((store?.backend ?? 'sqlite') === m.to || this.host.backend() === m.to) return;
    this.host.log.error({ to: m.to, err: why }, 'the zone store move failed; lifting the write freeze');
    await cfg.exec_tx({
      compares: [{ key: MIGRATION_KEY, revision: current.revision }],
      ops: [
        { op: 'delete', key: FREEZE_KEY },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'failed', error: why, updated_at: Date.now() }) },
      ],
    });
    if (m.to === 'etcd') await this.dropMember();
  }

  private async writeMigration(m: MigrationRecord): Promise<void> {
    await this.host.runtime().configClient().set({ key: MIGRATION_KEY, value: JSON.stringify({ ...m, updated_at: Date.now() }) });
  }

  /** The zone's third core device came online and the store is still SQLite here: ask for the move. Only once: after
   * a move back to SQLite (an admin's choice), the zone stays there until asked again. */
  private async maybeAutoMove(): Promise<void> {
    if (this.busy || this.host.backend() !== 'sqlite' || this.last.migration !== null || this.last.store?.backend === 'etcd') return;
    const online = await this.onlineCores().catch(() => []);
    if (online.length < 3) return;
    this.host.log.info({ cores: online.map((d) => d.name) }, 'three core devices online: moving the zone store to etcd');
    await this.host.runtime().configClient().create({
      key: MIGRATION_KEY,
      value: JSON.stringify({ to: 'etcd', requested_by: `node-daemon@${this.self}`, requested_at: Date.now(), state: 'requested', error: null, updated_at: Date.now() } satisfies MigrationRecord),
    }).catch(() => undefined);
  }

  /**
   * A member whose device was removed from the zone leaves the etcd cluster too (device_remove checked the quorum
   * first). One device does it, the first of the remaining members by name, so two do not race.
   */
  private async pruneRemovedMembers(): Promise<void> {
    const c = this.last.store;
    if (this.busy || c?.backend !== 'etcd' || this.host.backend() !== 'etcd') return;
    const rt = this.host.runtime();
    await rt.devices().follow();
    const present = c.members.filter((x) => rt.devices().byName(x.name));
    const gone = c.members.filter((x) => !rt.devices().byName(x.name));
    if (gone.length === 0 || present.length === 0 || present.map((x) => x.name).sort()[0] !== this.self) return;
    const { clusterHealth, removeMember } = await etcdCluster();
    const endpoints = present.map((p) => p.client_url);
    const inCluster = new Set((await clusterHealth(endpoints, this.tlsBuffers())).members.map((m) => m.name));
    for (const x of gone) {
      // A removal whose record update failed last time is already done in etcd: only the record is left to fix.
      if (inCluster.has(x.name)) await removeMember(endpoints, x.name, { force: true }, this.tlsBuffers());
      this.host.log.info({ member: x.name }, 'removed the etcd member of a device that left the zone');
    }
    const record: ConfigStoreRecord = { ...c, members: present };
    await rt.configClient().set({ key: CONFIG_STORE_KEY, value: JSON.stringify(record) });
  }

  /**
   * Keeps the cluster as large as the zone allows: the largest odd number of online core devices, at most seven (an
   * even count adds a member quorum needs without adding tolerance). A core device that joined a zone already on
   * etcd, or that replaces a removed one, is added one at a time, and only while every member is healthy. The first of
   * the members by name does it.
   */
  private async growMembers(): Promise<void> {
    const c = this.last.store;
    if (this.busy || c?.backend !== 'etcd' || this.host.backend() !== 'etcd') return;
    if ([...c.members].map((x) => x.name).sort()[0] !== this.self) return;
    const { addMember, clusterHealth } = await etcdCluster();
    const endpoints = c.members.map((x) => x.client_url);
    const health = await clusterHealth(endpoints, this.tlsBuffers());
    // Every round, whether the cluster would grow or not: the device an unstarted member was added for is often the
    // one that went offline, and then no growing is wanted at all.
    if (await this.dropUnstarted(c, endpoints, health)) return;
    const online = await this.onlineCores();
    const wanted = clusterSize(online.length);
    const candidate = online.filter((d) => !c.members.some((x) => x.name === d.name)).sort((a, b) => (a.name < b.name ? -1 : 1))[0];
    if (c.members.length >= wanted || !candidate) return;
    if (health.healthy !== c.members.length) return;
    const added: EtcdMemberRecord = { name: candidate.name, peer_url: `https://${candidate.ip}:${PEER_PORT}`, client_url: `https://${candidate.ip}:${CLIENT_PORT}` };
    await addMember(endpoints, added.peer_url, added.name, this.tlsBuffers());
    const record: ConfigStoreRecord = { ...c, members: [...c.members, added] };
    await this.host.runtime().configClient().set({ key: CONFIG_STORE_KEY, value: JSON.stringify(record) });
    this.host.log.info({ member: added.name }, 'added a core device to the etcd cluster');
  }

  /**
   * A member added for a device that then never started it (the device went offline, or the addition's answer was
   * lost) counts against the quorum and stops the cluster growing, for good: after UNSTARTED_GRACE_MS it is removed
   * again, from etcd and from the record. It never held data or voted, so removing it is always safe; the device is
   * added afresh when it is online again. Answers whether it removed one.
   */
  private async dropUnstarted(c: Extract<ConfigStoreRecord, { backend: 'etcd' }>, endpoints: string[], health: ClusterHealth): Promise<boolean> {
    const overdue = this.unstarted.overdue(health.members, Date.now());
    if (overdue.length === 0) return false;
    const { removeMember } = await etcdCluster();
    for (const m of overdue) {
      await removeMember(endpoints, m.id, {}, this.tlsBuffers());
      this.host.log.warn({ peer: m.peerUrls }, 'removed an etcd member that was added but never started');
    }
    const gone = new Set(overdue.flatMap((m) => m.peerUrls));
    const kept = c.members.filter((x) => !gone.has(x.peer_url));
    if (kept.length !== c.members.length) {
      await this.host.runtime().configClient().set({ key: CONFIG_STORE_KEY, value: JSON.stringify({ ...c, members: kept } satisfies ConfigStoreRecord) });
    }
    return true;
  }

  /** Core devices that reported within the online window, with the address they reported. */
  private async onlineCores(): Promise<{ name: string; ip: string }[]> {
    const rt = this.host.runtime();
    const listed = await rt.configClient().list({ prefix: 'devices/', limit: 10_000 });
    const info = new Map(listed.entries.filter((e) => e.key.endsWith('/info')).map((e) => [e.key.split('/')[1]!, e.value]));
    await rt.devices().follow();
    const out: { name: string; ip: string }[] = [];
    for (const d of rt.devices().list()) {
      if (d.doc.role !== 'core') continue;
      let reported: { reported_at?: number } = {};
      try {
        reported = JSON.parse(info.get(d.doc.name) ?? '{}') as { reported_at?: number };
      } catch {
        continue;
      }
      const ip = d.doc.name === this.self ? collectDeviceInfo().addresses.find((a) => a.family === 'IPv4')?.address : d.addresses.find((a) => !a.includes(':'));
      if (ip && typeof reported.reported_at === 'number' && Date.now() - reported.reported_at < ONLINE_MS) out.push({ name: d.doc.name, ip });
    }
    return out;
  }

  // ---- this device's member ---------------------------------------------------------------------------------------

  private memberTls() {
    return { caFile: this.f.ca, certFile: this.f.cert, keyFile: join(this.host.paths.etc, IDENTITY_FILES.deviceKey) };
  }

  /** The member's certificate: this device's key, certified by the zone CA (the enrolment key, which every core device
   * holds), for its LAN address and loopback. */
  private async writeTls(caCert: string, ip: string): Promise<void> {
    const rt = this.host.runtime();
    const enrolPath = join(this.host.paths.etc, IDENTITY_FILES.enrolKey);
    if (!existsSync(enrolPath)) throw new Error(`${enrolPath} is missing: only a core device with the zone enrolment key can run an etcd member`);
    const { issueCert } = await tlsCerts();
    const cert = await issueCert({
      caKey: loadKeyFile(enrolPath),
      caCertPem: caCert,
      subjectPublicKey: rt.identity.deviceKey.publicKey,
      commonName: `${this.self}.${rt.identity.boot.zone}`,
      ips: [ip, '127.0.0.1'],
    });
    mkdirSync(join(this.host.paths.etc, 'etcd'), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.f.ca, caCert, 0o644);
    writeFileAtomic(this.f.cert, cert, 0o644);
  }

  private async ensureMember(members: EtcdMemberRecord[], token: string, caCert: string, state: 'new' | 'existing'): Promise<void> {
    if (this.member?.running) return;
    if ((await etcdMember()).clearDataOfOtherCluster(this.f.data, this.savedToken(), token)) {
      this.host.log.warn({ dir: this.f.data }, 'etcd data of an earlier cluster found; deleted it before joining this one');
    }
    const mine = members.find((x) => x.name === this.self)!;
    const ip = new URL(mine.peer_url).hostname;
    await this.writeTls(caCert, ip);
    const spec: EtcdMemberSpec = {
      name: this.self,
      dataDir: this.f.data,
      peerUrl: mine.peer_url,
      clientUrls: [`https://127.0.0.1:${CLIENT_PORT}`, mine.client_url],
      initialCluster: members.map((x) => ({ name: x.name, peerUrl: x.peer_url })),
      // A member that has data restarts from it whatever the state says; one without joins as the record says.
      state: (await etcdMember()).hasMemberData(this.f.data) ? 'existing' : state,
      clusterToken: token,
      tls: this.memberTls(),
    };
    mkdirSync(this.f.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(this.f.spec, JSON.stringify(spec, null, 2) + '\n', 0o600);
    await this.runMember(spec);
  }

  /** The cluster token of the member this device last ran, from its saved spec; null when there is none to read. */
  private savedToken(): string | null {
    try {
      return this.savedSpec().clusterToken;
    } catch {
      return null;
    }
  }

  private async runMember(spec: EtcdMemberSpec): Promise<void> {
    if (this.member?.running) return;
    mkdirSync(join(this.host.paths.logs, 'etcd'), { recursive: true });
    const { EtcdMember } = await etcdMember();
    const member = new EtcdMember(spec, {
      logFile: this.f.log,
      onExit: (code, signal) => {
        if (this.member !== member || this.stop.signal.aborted) return;
        this.member = null;
        // etcd exits by itself, with status 0, when the cluster removed this member (its device left the zone): its
        // data can never start again, so it goes, and nothing is restarted.
        if (code === 0 && signal === null) {
          this.host.log.warn('etcd member left the cluster (it was removed); deleting its data');
          rmSync(this.f.dir, { recursive: true, force: true });
          return;
        }
        this.host.log.error({ code, signal }, 'etcd member exited; starting it again in 5 s');
        setTimeout(() => this.enqueue(() => this.startSavedMember()), 5000).unref();
      },
    });
    this.member = member;
    try {
      await member.start();
      this.host.log.info({ member: spec.name, peer: spec.peerUrl }, 'etcd member running');
    } catch (err) {
      this.member = null;
      throw err;
    }
  }

  /** Stops the member and forgets it: its data belongs to a cluster this device no longer serves. */
  private async dropMember(): Promise<void> {
    const m = this.member;
    this.member = null;
    await m?.stop();
    rmSync(this.f.dir, { recursive: true, force: true });
    this.host.log.info('etcd member stopped and its data removed');
  }

  private etcdBackend(endpoints: string[]) {
    return { type: 'etcd' as const, endpoints, tls: { ca: this.f.ca, cert: this.f.cert, key: join(this.host.paths.etc, IDENTITY_FILES.deviceKey) } };
  }

  private tlsBuffers() {
    return { ca: readFileSync(this.f.ca), cert: readFileSync(this.f.cert), key: readFileSync(join(this.host.paths.etc, IDENTITY_FILES.deviceKey)) };
  }

  /** This device's member first, then the others: the client moves on to another member while its own is down. */
  private endpointsFor(members: EtcdMemberRecord[]): string[] {
    return [`https://127.0.0.1:${CLIENT_PORT}`, ...members.filter((x) => x.name !== this.self).map((x) => x.client_url)];
  }

  private async switchToEtcd(members: EtcdMemberRecord[]): Promise<void> {
    const cfg = loadNodeConfig(this.host.paths);
    saveNodeConfig(this.host.paths, { ...cfg, config_backend: this.etcdBackend(this.endpointsFor(members)) });
    await this.host.reboot('the zone store is on etcd now');
  }

  /**
   * The cluster gained or lost a member since this device switched to etcd: its system-config talks to the members the
   * record names now. A removed member whose process still takes connections would otherwise swallow every call the
   * client sends there until its deadline, and a new member would never share the load.
   */
  private async followMembers(members: EtcdMemberRecord[]): Promise<void> {
    const cfg = loadNodeConfig(this.host.paths);
    const want = this.endpointsFor(members);
    const have = cfg.config_backend?.type === 'etcd' ? cfg.config_backend.endpoints : null;
    if (!have || (have.length === want.length && have.every((e, i) => e === want[i]))) return;
    saveNodeConfig(this.host.paths, { ...cfg, config_backend: this.etcdBackend(want) });
    this.host.log.info({ endpoints: want }, 'the etcd cluster\'s members changed: system-config reconnects to them');
    await this.host.restartService('system-config');
  }

  private async switchToRemote(primary: string): Promise<void> {
    const rt = this.host.runtime();
    await rt.devices().follow();
    const d = rt.devices().byName(primary);
    const ip = d?.addresses.find((a) => !a.includes(':'));
    if (!d || !ip) throw new Error(`the zone store moved to ${primary}, whose address is not known yet`);
    await this.leaveForRemote({ name: primary, key: d.doc.key, address: `${ip}:${rt.config.ports.tunnel}` });
    await this.host.reboot(`the zone store moved to SQLite on ${primary}`);
  }

  /** This device reaches the store through `peer` from its next boot on, and runs no member any more. */
  async leaveForRemote(peer: TunnelPeer): Promise<void> {
    writeFileAtomic(join(this.host.paths.etc, IDENTITY_FILES.peers), JSON.stringify([peer], null, 2) + '\n', 0o644);
    const cfg = loadNodeConfig(this.host.paths);
    saveNodeConfig(this.host.paths, { ...cfg, config_backend: { type: 'remote' } });
    // The member goes first: node.json no longer names etcd, so nothing here needs it, and a reboot that failed or a
    // power cut after it would otherwise leave it running with a cluster's data for good.
    await this.dropMember();
  }

  /**
   * The other member devices with their keys and tunnel addresses, kept on disk while the cluster runs: when it no
   * longer answers this device (a move back to SQLite made while it was away, whose members then left), they are who
   * can say where the store went (movedStore). Written only with every member's device known: a directory not read
   * yet must not empty the list.
   */
  private async noteCores(): Promise<void> {
    const c = this.last.store;
    if (c?.backend !== 'etcd' || !c.members.some((x) => x.name === this.self) || this.host.backend() !== 'etcd') return;
    const rt = this.host.runtime();
    await rt.devices().follow();
    const cores: TunnelPeer[] = [];
    for (const m of c.members) {
      if (m.name === this.self) continue;
      const d = rt.devices().byName(m.name);
      if (!d) return;
      cores.push({ name: m.name, key: d.doc.key, address: `${new URL(m.peer_url).hostname}:${rt.config.ports.tunnel}` });
    }
    const text = JSON.stringify(cores, null, 2) + '\n';
    if (readTextIfExists(this.f.cores) !== text) writeFileAtomic(this.f.cores, text, 0o644);
  }

  /**
   * Told that the store did not answer this device (boot, or store control's watch): whether to ask the other core
   * devices where it went now. A member's store that stays silent may be a cluster the others left in a move back to
   * SQLite made while this device was away; they are asked once it has been silent ASK_WHERE_STORE_AFTER_MS, and at
   * most every ASK_WHERE_STORE_EVERY_MS.
   */
  storeSilent(): boolean {
    const now = Date.now();
    this.unansweredSince ??= now;
    if (this.host.backend() !== 'etcd' || now - this.unansweredSince < ASK_WHERE_STORE_AFTER_MS || now - this.askedWhereAt < ASK_WHERE_STORE_EVERY_MS) return false;
    this.askedWhereAt = now;
    return true;
  }

  /** Told that the store answered: its silence, if any, is over. */
  storeAnswered(): void {
    this.unansweredSince = null;
  }

  /** Leaves a cluster whose store the other core devices say is elsewhere now, to reach it as a remote device. */
  private async leaveIfMoved(): Promise<void> {
    if (this.host.backend() !== 'etcd' || this.unansweredSince === null) return;
    const to = await this.movedStore();
    if (!to) return;
    this.host.log.warn({ via: to.name }, 'the zone store moved while this device was away; reaching it as a remote device from now on');
    await this.leaveForRemote(to);
    await this.host.reboot(`the zone store moved while this device was away (${to.name} knows where)`);
  }

  /**
   * Where the zone's store is now, as another core device's own system-config says, for a device whose etcd cluster
   * does not answer: the device holding it on SQLite, or a member of a cluster this device is not in (either way this
   * device is to reach it as a remote one). Null while the record still names this device's cluster, or when no core
   * device it knows of (its last members, its join peers) answers. Asked through the tunnels, by device key both ways.
   */
  async movedStore(): Promise<TunnelPeer | null> {
    const rt = this.host.runtime();
    const known = new Map<string, TunnelPeer>();
    for (const file of [this.f.cores, join(this.host.paths.etc, IDENTITY_FILES.peers)]) {
      const text = readTextIfExists(file);
      if (text === null) continue;
      try {
        for (const p of peerListSchema.parse(JSON.parse(text))) if (p.name !== this.self && !known.has(p.name)) known.set(p.name, p);
      } catch (err) {
        this.host.log.warn({ file, err: (err as Error).message }, 'a list of core devices is unreadable; passing it over');
      }
    }
    if (known.size === 0) return null;
    const certPem = await deviceTunnelCert(rt.identity);
    const tunnel = new TunnelClient({ key: rt.identity.deviceKey, certPem, connectTimeoutMs: 5000 });
    try {
      for (const peer of known.values()) {
        let record: ConfigStoreRecord | null;
        try {
          const client = createClient(systemConfigApi, { baseUrl: `tunnel://${peer.name}`, transport: tunnelTransport(tunnel, peer), token: rt.serviceToken, timeoutMs: 10_000 });
          record = parseRecord(configStoreSchema, (await client.get({ key: CONFIG_STORE_KEY })).value);
        } catch (err) {
          // Down too, or no system-config of its own: another may know.
          this.host.log.info({ peer: peer.name, err: (err as Error).message }, 'a core device could not say where the zone store is');
          continue;
        }
        if (record === null) continue;
        const holder = record.backend === 'sqlite' ? record.primary : record.token !== this.savedToken() && !record.members.some((x) => x.name === this.self) ? record.members[0]?.name : undefined;
        if (holder === undefined || holder === this.self) return null;
        return holder === peer.name ? peer : (known.get(holder) ?? peer);
      }
      return null;
    } finally {
      await tunnel.close();
    }
  }

  // ---- moves, on the device that holds the store ------------------------------------------------------------------

  private async moveToEtcd(request: MigrationRecord): Promise<void> {
    const rt = this.host.runtime();
    const log = this.host.log;
    const m: MigrationRecord = { ...request, orchestrator: this.self };
    const fail = async (why: string) => {
      log.error({ err: why }, 'moving the zone store to etcd failed');
      await this.writeMigration({ ...m, state: 'failed', error: why }).catch(() => undefined);
      await this.dropMember();
    };
    const online = await this.onlineCores();
    const chosen = pickMembers(online, this.self);
    if (chosen.length < 3) return fail(`an etcd cluster needs 3 core devices online; ${online.length} are (${online.map((d) => d.name).join(', ')})`);
    const enrolPath = join(this.host.paths.etc, IDENTITY_FILES.enrolKey);
    if (!existsSync(enrolPath)) return fail(`${this.self} does not hold the zone enrolment key, which certifies the members`);
    const members: EtcdMemberRecord[] = chosen.map((d) => ({ name: d.name, peer_url: `https://${d.ip}:${PEER_PORT}`, client_url: `https://${d.ip}:${CLIENT_PORT}` }));
    const { createCaCert } = await tlsCerts();
    const { clusterHealth } = await etcdCluster();
    const { copyStore, openStore, sqliteStorePath } = await stores();
    const caCert = await createCaCert({ caKey: loadKeyFile(enrolPath), commonName: `${rt.identity.boot.zone} zone CA`.slice(0, 64) });
    const token = `${rt.identity.boot.zone}-${randomBytes(6).toString('hex')}`.slice(0, 128);
    Object.assign(m, { members, token, ca_cert: caCert });
    await this.writeMigration({ ...m, state: 'forming' });
    log.info({ members: members.map((x) => x.name) }, 'forming the etcd cluster');
    try {
      await this.ensureMember(members, token, caCert, 'new');
    } catch (err) {
      return fail(`this device's etcd member did not start: ${(err as Error).message}`);
    }
    const endpoints = members.map((x) => x.client_url);
    let health: ClusterHealth | null = null;
    const deadline = Date.now() + FORM_TIMEOUT_MS;
    while (Date.now() < deadline) {
      health = await clusterHealth(endpoints, this.tlsBuffers()).catch(() => null);
      if (health && health.healthy === members.length) break;
      await sleep(1000);
    }
    if (!health || health.healthy !== members.length) {
      return fail(`the etcd cluster did not form within ${FORM_TIMEOUT_MS / 1000} s (${health ? `${health.healthy} of ${members.length} members healthy` : 'no member answered'})`);
    }

    // Freeze, let writes already past the check land, then take the store away from the service and copy it.
    const cfg = rt.configClient();
    await cfg.exec_tx({
      ops: [
        { op: 'put', key: FREEZE_KEY, value: JSON.stringify({ reason: 'the zone store is moving to etcd', by: this.self, at: Date.now() }) },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'copying', updated_at: Date.now() }) },
      ],
    });
    await sleep(FREEZE_SETTLE_MS);
    let source: Store | null = null;
    let target: Store | null = null;
    try {
      await this.host.stopService('system-config');
      source = await openStore({ type: 'sqlite' }, this.host.paths);
      target = await openStore(this.etcdBackend(endpoints), this.host.paths);
      const copied = await copyStore(source, target);
      const record: ConfigStoreRecord = { backend: 'etcd', members, token, ca_cert: caCert, first_revision: copied.targetRevision + 1 };
      await target.execTx([], [
        { op: 'delete', key: FREEZE_KEY },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'done', updated_at: Date.now() }) },
        { op: 'put', key: CONFIG_STORE_KEY, value: JSON.stringify(record) },
      ]);
      log.info({ keys: copied.keys, bytes: copied.bytes }, 'zone store copied to etcd and verified');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'copying the zone store to etcd failed; staying on SQLite');
      if (target) await wipe(target).catch(() => undefined);
      await source?.execTx([], [
        { op: 'delete', key: FREEZE_KEY },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'failed', error: (err as Error).message, updated_at: Date.now() }) },
      ]).catch(() => undefined);
      await source?.close();
      await target?.close();
      await this.dropMember();
      await this.host.reboot('the move to etcd failed; staying on SQLite');
      return;
    }
    await source.close();
    await target.close();
    // node.json first: a power cut between the two steps must leave this node on etcd with the old file still in
    // place (nothing reads it, and a move back sets any such file aside), never on SQLite with the file gone, which
    // would open an empty store. The old file stays beside the new store for an operator to inspect or restore.
    const nodeCfg = loadNodeConfig(this.host.paths);
    saveNodeConfig(this.host.paths, { ...nodeCfg, config_backend: this.etcdBackend(this.endpointsFor(members)) });
    setAsideSqlite(sqliteStorePath(this.host.paths), 'moved');
    await this.host.reboot('the zone store moved to etcd');
  }

  private async moveToSqlite(request: MigrationRecord): Promise<void> {
    const log = this.host.log;
    const m: MigrationRecord = { ...request, orchestrator: this.self, primary: this.self };
    const cfg = this.host.runtime().configClient();
    const nodeCfg = loadNodeConfig(this.host.paths);
    const etcd = nodeCfg.config_backend?.type === 'etcd' ? nodeCfg.config_backend : null;
    if (!etcd) return;
    const { copyStore, openStore, sqliteStorePath } = await stores();
    // Put back in etcd if the move fails after recording itself there (an answer lost on the way, the write landed).
    const previous = (await cfg.get({ key: CONFIG_STORE_KEY })).value;
    await cfg.exec_tx({
      ops: [
        { op: 'put', key: FREEZE_KEY, value: JSON.stringify({ reason: `the zone store is moving to SQLite on ${this.self}`, by: this.self, at: Date.now() }) },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'copying', updated_at: Date.now() }) },
      ],
    });
    await sleep(FREEZE_SETTLE_MS);
    const db = sqliteStorePath(this.host.paths);
    const clearTarget = () => {
      for (const suffix of SQLITE_SUFFIXES) rmSync(db + suffix, { force: true });
    };
    setAsideSqlite(db, 'old');
    let source: Store | null = null;
    let record: ConfigStoreRecord | null = null;
    let lastError: Error | null = null;
    try {
      source = await openStore(etcd, this.host.paths);
      // Several instances serve etcd, and a write already past one instance's freeze check can still land during a
      // copy; the copy notices (the source revision moved) and is simply made again from an empty file.
      for (let attempt = 1; attempt <= COPY_ATTEMPTS && !record; attempt++) {
        const target = await openStore({ type: 'sqlite' }, this.host.paths);
        try {
          const copied = await copyStore(source, target);
          const done: ConfigStoreRecord = { backend: 'sqlite', primary: this.self, first_revision: copied.targetRevision + 1 };
          await target.execTx([], [
            { op: 'delete', key: FREEZE_KEY },
            { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'done', updated_at: Date.now() }) },
            { op: 'put', key: CONFIG_STORE_KEY, value: JSON.stringify(done) },
          ]);
          // The etcd store stays frozen: other members read there that the store moved, and nobody may write there.
          await source.execTx([], [{ op: 'put', key: CONFIG_STORE_KEY, value: JSON.stringify(done) }]);
          record = done;
          log.info({ keys: copied.keys, bytes: copied.bytes, attempt }, 'zone store copied to SQLite and verified');
        } catch (err) {
          lastError = err as Error;
          log.warn({ err: lastError.message, attempt }, 'copy to SQLite failed');
          await target.close();
          clearTarget();
          await sleep(FREEZE_SETTLE_MS);
          continue;
        }
        await target.close();
      }
    } catch (err) {
      lastError = err as Error;
    }
    if (!record) {
      clearTarget();
      await source?.execTx([], [
        { op: 'delete', key: FREEZE_KEY },
        { op: 'put', key: MIGRATION_KEY, value: JSON.stringify({ ...m, state: 'failed', error: lastError?.message ?? 'unknown error', updated_at: Date.now() }) },
        ...(previous !== null ? [{ op: 'put' as const, key: CONFIG_STORE_KEY, value: previous }] : []),
      ]).catch(() => undefined);
      await source?.close();
      log.error({ err: lastError?.message }, 'moving the zone store to SQLite failed');
      return;
    }
    await source!.close();
    await this.switchToSqlite(nodeCfg);
  }

  /** node.json to SQLite, the kernel booted on it, and this device's member dropped once the others moved off etcd. */
  private async switchToSqlite(nodeCfg: ReturnType<typeof loadNodeConfig>): Promise<void> {
    saveNodeConfig(this.host.paths, { ...nodeCfg, config_backend: { type: 'sqlite' } });
    await this.host.reboot('the zone store moved to SQLite');
    // The others learn the move from etcd, so this member stays until they have: the cluster keeps quorum with it.
    await sleep(15_000, this.stop.signal);
    if (!this.stop.signal.aborted) await this.dropMember();
  }

  /**
   * The record in etcd says the store is SQLite on this device, and this device still runs on etcd: it stopped between
   * recording the move and switching. Its SQLite file holds the copy, with that same record and the move marked done,
   * if the move got that far; then the switch is made now. Anything else is left alone and reported: no file here may
   * become the store unless it is the finished copy the record describes.
   */
  private async finishMoveToSqlite(c: Extract<ConfigStoreRecord, { backend: 'sqlite' }>, m: MigrationRecord | null): Promise<void> {
    const { openStore, sqliteStorePath } = await stores();
    const db = sqliteStorePath(this.host.paths);
    let held: ConfigStoreRecord | null = null;
    let done: MigrationRecord | null = null;
    if (existsSync(db)) {
      const file = await openStore({ type: 'sqlite' }, this.host.paths);
      try {
        held = parseRecord(configStoreSchema, (await file.get(CONFIG_STORE_KEY))?.value);
        done = parseRecord(migrationSchema, (await file.get(MIGRATION_KEY))?.value);
      } finally {
        await file.close();
      }
    }
    const same = held?.backend === 'sqlite' && held.primary === c.primary && held.first_revision === c.first_revision;
    const finished = done?.state === 'done' && done.to === 'sqlite' && done.orchestrator === this.self && (m === null || done.requested_at === m.requested_at);
    if (!same || !finished) {
      if (!this.reportedUnfinished) this.host.log.error({ db }, 'the zone store is recorded as moved to SQLite on this device, but its SQLite file does not hold that copy; not switching');
      this.reportedUnfinished = true;
      return;
    }
    this.host.log.warn('finishing a move to SQLite this device recorded before it stopped');
    await this.switchToSqlite(loadNodeConfig(this.host.paths));
  }
}

/** A SQLite database is its file and, in WAL mode, two companions: they move together or not at all. */
const SQLITE_SUFFIXES = ['', '-wal', '-shm'] as const;

/** Renames a SQLite store out of the way (`<db>.<label>-<time>`), kept for an operator to inspect or restore. */
function setAsideSqlite(db: string, label: string): void {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const suffix of SQLITE_SUFFIXES) if (existsSync(db + suffix)) renameSync(db + suffix, `${db}.${label}-${stamp}${suffix}`);
}

type Store = Awaited<ReturnType<Awaited<ReturnType<typeof stores>>['openStore']>>;

/** Empties a store a failed copy left half-filled, so the next attempt starts from an empty target. */
async function wipe(store: Store): Promise<void> {
  for (;;) {
    const listed = await store.list('', 128);
    if (listed.entries.length === 0) return;
    await store.execTx([], listed.entries.map((e) => ({ op: 'delete' as const, key: e.key })));
  }
}
