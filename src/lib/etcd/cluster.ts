// Cluster operations on the zone's etcd: per-member health, quorum arithmetic, and adding and removing members with
// the quorum rules of docs/etcd-control.md. node_daemon, `buckyos status` and the control panel all read the same
// ClusterHealth, so what the user is shown is what the refusals are based on.
import { Etcd3, type IMember } from 'etcd3';
import { runOnce } from './run-once.ts';
import { assertMemberName, memberUrl } from './member.ts';

/** Client TLS material (PEM): the zone CA, and a certificate and key the members accept. */
export interface EtcdClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface MemberHealth {
  /** etcd's member id, in hex as etcdctl prints it. */
  id: string;
  /** Empty for a member that was added but has never started. */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  /** A learner replicates but does not vote, so it counts for neither quorum nor health. */
  learner: boolean;
  /** The member answered, follows a leader, raised no alarm and served a read that needs quorum. */
  healthy: boolean;
  leader: boolean;
  /** Why the member is not healthy; null when it is. */
  problem: string | null;
}

export interface ClusterHealth {
  members: MemberHealth[];
  /** Healthy voting members. */
  healthy: number;
  /** Voting members needed for the cluster to accept reads and writes. */
  quorum: number;
  hasQuorum: boolean;
  /** How many more voting members may fail before the cluster stops. */
  faultTolerance: number;
  /** The leader's name, or null when no healthy member follows one. */
  leader: string | null;
}

const DEFAULT_TIMEOUT_MS = 2000;
// Membership changes are committed through raft; on a slow device that can take a few election rounds.
const CHANGE_TIMEOUT_MS = 15_000;
const RECONFIG_RETRY_MS = 500;
// etcd's ErrUnhealthy, the refusal of its strict reconfiguration check.
const UNHEALTHY_CLUSTER = 'etcdserver: unhealthy cluster';

export function quorumOf(members: number): number {
  if (!Number.isInteger(members) || members < 1) throw new RangeError(`a cluster has a whole, positive number of members, got ${members}`);
  return Math.floor(members / 2) + 1;
}


/** A client bound to one member, so every answer is known to come from that member. */
function memberClient(url: string, tls: EtcdClientTls | undefined, timeoutMs: number): Etcd3 {
  return new Etcd3({
    hosts: [url],
    credentials: tls && { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
    dialTimeout: timeoutMs,
    defaultCallOptions: () => ({ deadline: Date.now() + timeoutMs }),
    faultHandling: { global: runOnce },
  });
}

async function withClient<T>(url: string, tls: EtcdClientTls | undefined, timeoutMs: number, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const client = memberClient(url, tls, timeoutMs);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

function hexId(id: string): string {
  return BigInt(id).toString(16);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

function checkTimeout(timeoutMs: number): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
}

/** The member list as the most up-to-date answering endpoint sees it (the highest raft term wins over a member that
 * is cut off and still holds an older list). */
async function listMembers(endpoints: string[], tls: EtcdClientTls | undefined, timeoutMs: number): Promise<IMember[]> {
  if (endpoints.length === 0) throw new Error('no etcd endpoint given');
  const answers = await Promise.allSettled(
    endpoints.map((url) => withClient(url, tls, timeoutMs, (c) => c.cluster.memberList({}))),
  );
  let best: { term: bigint; members: IMember[] } | null = null;
  const failures: string[] = [];
  for (const [i, a] of answers.entries()) {
    if (a.status === 'rejected') {
      failures.push(`${endpoints[i]}: ${errorText(a.reason)}`);
      continue;
    }
    const term = BigInt(a.value.header.raft_term);
    if (best === null || term > best.term) best = { term, members: a.value.members };
  }
  if (best === null) throw new Error(`no etcd endpoint answered the member list: ${failures.join('; ')}`);
  return best.members;
}

interface Probe {
  healthy: boolean;
  leaderId: string | null;
  problem: string | null;
}

/** Asks the member itself, at one of its client URLs, whether it can serve. */
async function probeUrl(member: IMember, url: string, tls: EtcdClientTls | undefined, timeoutMs: number): Promise<Probe> {
  try {
    return await withClient(url, tls, timeoutMs, async (c) => {
      const status = await c.maintenance.status();
      if (status.header.member_id !== member.ID) {
        return { healthy: false, leaderId: null, problem: `${url} answers as member ${hexId(status.header.member_id)}` };
      }
      if (status.leader === '0') return { healthy: false, leaderId: null, problem: 'follows no leader' };
      if (status.errors.length > 0) return { healthy: false, leaderId: status.leader, problem: status.errors.join('; ') };
      // Linearizable, so the member must reach the leader and the leader a quorum: the same test as etcd's /health.
      await c.kv.range({ key: Buffer.from('health'), count_only: true });
      return { healthy: true, leaderId: status.leader, problem: null };
    });
  } catch (err) {
    return { healthy: false, leaderId: null, problem: `${url}: ${errorText(err)}` };
  }
}

async function probeMember(member: IMember, tls: EtcdClientTls | undefined, timeoutMs: number): Promise<Probe> {
  if (member.clientURLs.length === 0) return { healthy: false, leaderId: null, problem: 'added but never started' };
  const probes = await Promise.all(member.clientURLs.map((url) => probeUrl(member, url, tls, timeoutMs)));
  return probes.find((p) => p.healthy) ?? probes[0];
}

/** The health of every member, each asked directly with `timeoutMs` (default 2 s); throws only when no endpoint
 * answers the member list at all. */
export async function clusterHealth(endpoints: string[], tls?: EtcdClientTls, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ClusterHealth> {
  checkTimeout(timeoutMs);
  const members = await listMembers(endpoints, tls, timeoutMs);
  const probes = await Promise.all(members.map((m) => probeMember(m, tls, timeoutMs)));
  const leaderId = probes.find((p) => p.healthy)?.leaderId ?? null;
  const health = members
    .map((m, i): MemberHealth => ({
      id: hexId(m.ID),
      name: m.name,
      peerUrls: m.peerURLs,
      clientUrls: m.clientURLs,
      learner: m.isLearner,
      healthy: probes[i].healthy,
      leader: m.ID === leaderId,
      problem: probes[i].problem,
    }))
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const voting = health.filter((m) => !m.learner);
  const healthy = voting.filter((m) => m.healthy).length;
  const quorum = quorumOf(voting.length);
  return {
    members: health,
    healthy,
    quorum,
    hasQuorum: healthy >= quorum,
    faultTolerance: Math.max(0, healthy - quorum),
    leader: health.find((m) => m.leader)?.name ?? null,
  };
}

/** The member called `name`; a member that never started has no name yet and is found by its hex id instead. */
function findMember(health: ClusterHealth, name: string): MemberHealth {
  const found = health.members.filter((m) => m.name === name || (m.name === '' && m.id === name));
  if (found.length === 1) return found[0];
  const known = health.members.map((m) => m.name || `(unstarted ${m.id})`).join(', ');
  if (found.length === 0) throw new Error(`etcd has no member ${JSON.stringify(name)}; members: ${known}`);
  throw new Error(`etcd has ${found.length} members called ${JSON.stringify(name)}: ${known}`);
}

interface QuorumAfter {
  healthy: number;
  members: number;
  quorum: number;
}

function afterRemoval(health: ClusterHealth, target: MemberHealth): QuorumAfter {
  const voting = health.members.filter((m) => !m.learner);
  const members = target.learner ? voting.length : voting.length - 1;
  const healthy = health.healthy - (target.healthy && !target.learner ? 1 : 0);
  return { healthy, members, quorum: members === 0 ? 1 : quorumOf(members) };
}

/** True when removing member `name` from the cluster would leave fewer healthy voting members than the new quorum. */
export function removalLosesQuorum(health: ClusterHealth, name: string): boolean {
  const after = afterRemoval(health, findMember(health, name));
  return after.healthy < after.quorum;
}

/** True when stopping (not removing) member `name` would leave the cluster without quorum. Stopping a member that is
 * already unhealthy changes nothing and is never refused. */
export function stopLosesQuorum(health: ClusterHealth, name: string): boolean {
  const target = findMember(health, name);
  if (!target.healthy || target.learner) return false;
  return health.healthy - 1 < health.quorum;
}

/** True when one more voting member would raise the quorum above the members that are healthy now: the cluster would
 * stop until the new member has started and caught up. Growing a healthy one-member cluster is the exception, as in
 * etcd: there is no other way to grow it, and it has no fault tolerance to lose. */
export function additionLosesQuorum(health: ClusterHealth): boolean {
  const voting = health.members.filter((m) => !m.learner).length;
  if (voting === 1 && health.healthy === 1) return false;
  return health.healthy < quorumOf(voting + 1);
}

/** Client URLs to send a membership change to: healthy members other than `avoid`, the leader first. */
function changeUrls(health: ClusterHealth, avoid?: MemberHealth): string[] {
  return health.members
    .filter((m) => m.healthy && m !== avoid)
    .sort((a, b) => Number(b.leader) - Number(a.leader))
    .flatMap((m) => m.clientUrls);
}

/** The --initial-cluster of a member joining now: every member at every peer URL, the new one (still unnamed in etcd's
 * list) under the name it will start with. */
function initialClusterOf(
  members: { id: string; name: string; peerUrls: string[] }[],
  newId: string,
  newName: string,
): { name: string; peerUrl: string }[] {
  return members
    .flatMap((m) => m.peerUrls.map((peerUrl) => ({ name: m.id === newId ? newName : m.name, peerUrl })))
    .sort((a, b) => a.name.localeCompare(b.name) || a.peerUrl.localeCompare(b.peerUrl));
}

/**
 * Registers a new voting member, which must then start with state 'existing' and the returned initialCluster.
 * Repeating the call for a member that was added but has not started yet returns the same answer, so a node that
 * failed between the two steps can retry. Refused while another added member has not started, or when the larger
 * quorum could not be met by the members healthy now.
 */
export async function addMember(
  endpoints: string[],
  peerUrl: string,
  name: string,
  tls?: EtcdClientTls,
): Promise<{ id: string; initialCluster: { name: string; peerUrl: string }[] }> {
  assertMemberName(name, 'new etcd member name');
  const url = memberUrl(peerUrl, `peer URL of new member ${name}`, tls !== undefined);
  const health = await clusterHealth(endpoints, tls);
  const members = health.members;

  const atUrl = members.find((m) => m.peerUrls.includes(url));
  if (atUrl) {
    if (atUrl.name === '') return { id: atUrl.id, initialCluster: initialClusterOf(members, atUrl.id, name) };
    throw new Error(`peer URL ${url} already belongs to etcd member ${atUrl.name}`);
  }
  const named = members.find((m) => m.name === name);
  if (named) throw new Error(`etcd already has a member called ${name} (at ${named.peerUrls.join(', ')}); remove it first`);
  const unstarted = members.find((m) => m.name === '');
  if (unstarted) {
    throw new Error(
      `etcd member ${unstarted.id} at ${unstarted.peerUrls.join(', ')} was added but never started; ` +
        'start it or remove it before adding another',
    );
  }
  if (additionLosesQuorum(health)) {
    const voting = health.members.filter((m) => !m.learner).length;
    throw new Error(
      `adding ${name} would make ${voting + 1} members with a quorum of ${quorumOf(voting + 1)}, ` +
        `but only ${health.healthy} are healthy: bring the unhealthy members back first`,
    );
  }

  const res = await sendChange(health, undefined, tls, `add etcd member ${name}`, (c) => c.cluster.memberAdd({ peerURLs: [url] }));
  const after = res.members.map((m) => ({ id: hexId(m.ID), name: m.name, peerUrls: m.peerURLs }));
  const id = hexId(res.member.ID);
  return { id, initialCluster: initialClusterOf(after, id, name) };
}

/**
 * Removes member `name` (or, for a member that never started, its hex id). Refused when the healthy members left
 * would be fewer than the new quorum, unless `force`; etcd itself still refuses a removal that would leave fewer
 * *started* members than the new quorum. The removed member's process exits by itself; its data directory must be
 * deleted before the device can join again.
 */
export async function removeMember(endpoints: string[], name: string, opts: { force?: boolean }, tls?: EtcdClientTls): Promise<void> {
  const health = await clusterHealth(endpoints, tls);
  const target = findMember(health, name);
  const after = afterRemoval(health, target);
  if (after.healthy < after.quorum && !opts.force) {
    throw new Error(
      `removing etcd member ${name} would leave ${after.healthy} healthy of ${after.members} members, ` +
        `below the quorum of ${after.quorum}: system-config would stop serving. ` +
        'Bring the unhealthy members back first, or force the removal',
    );
  }
  await sendChange(health, target, tls, `remove etcd member ${name}`, (c) =>
    c.cluster.memberRemove({ ID: BigInt(`0x${target.id}`).toString() }),
  );
}

/**
 * Sends a membership change to the first healthy member that takes it. A change goes to another member only after a
 * failure to connect, and is repeated only after etcd's "unhealthy cluster" refusal, both of which etcd answers
 * before proposing it, so it can never apply twice. That refusal is etcd's strict reconfiguration check: it takes
 * no change until every member has been connected for 5 s (HealthInterval), so it follows every member restart.
 */
async function sendChange<T>(
  health: ClusterHealth,
  avoid: MemberHealth | undefined,
  tls: EtcdClientTls | undefined,
  what: string,
  fn: (c: Etcd3) => Promise<T>,
): Promise<T> {
  const urls = changeUrls(health, avoid);
  if (urls.length === 0) throw new Error(`cannot ${what}: no other member is healthy to take the change`);
  const deadline = Date.now() + CHANGE_TIMEOUT_MS;
  let lastError: unknown;
  for (let i = 0; ; ) {
    try {
      return await withClient(urls[i], tls, CHANGE_TIMEOUT_MS, fn);
    } catch (err) {
      lastError = err;
      const text = errorText(err);
      if (text.includes('No connection established') && i + 1 < urls.length) i++;
      else if (!text.includes(UNHEALTHY_CLUSTER) || Date.now() > deadline) break;
      else await new Promise((resolve) => setTimeout(resolve, RECONFIG_RETRY_MS));
    }
  }
  const hint = errorText(lastError).includes(UNHEALTHY_CLUSTER)
    ? ' (etcd counts fewer members connected for the last 5 s than the change needs)'
    : '';
  throw new Error(`could not ${what}: ${errorText(lastError)}${hint}`);
}
