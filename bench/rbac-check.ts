// RBAC check latency on generated zone policies of 1,000 and 10,000 rule lines (base policy included), against stock
// casbin `enforceSync` on the same model and policy text (`casbinReference`, the executable meaning of a policy).
// Both answer the same requests, in the same order, and must agree on every one of them; a disagreement fails the run.
import { DEFAULT_POLICY } from '../src/lib/rbac/default-policy.ts';
import { Rbac, casbinReference, parsePolicyCsv, type AccessRequest } from '../src/lib/rbac/enforcer.ts';
import { fmt, machineLine, percentile, table } from './support/measure.ts';

const SIZES = [1000, 10_000];
const TARGET_MS = 0.2;
/** A single check of ours takes well under a microsecond, near what one hrtime call costs, so it is timed in
 * batches; casbin's take a millisecond or more and are timed one by one. */
const OURS_BATCH = 16;
const OURS_MEASURE_MS = 3000;
const CASBIN_BUDGET_MS = 6000;
const CASBIN_MIN_CHECKS = 100;
const REQUESTS = 5000;

const FOLDERS = ['photos', 'documents', 'music', 'videos', 'notes', 'projects'];
const KERNEL = ['scheduler', 'node-daemon', 'verify-hub'];
const UI_APPS = ['control-panel', 'buckyos-cli'];

/** Deterministic so every run measures the same policy and requests (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Zone {
  tail: string;
  users: string[];
  apps: string[];
  groups: string[];
  /** Per-app consent grants and per-user shares as they were generated, to aim requests at granted resources. */
  appGrants: { app: string; owner: string; folder: string }[];
  shares: { user: string; owner: string; folder: string }[];
}

/**
 * A zone grown to `totalLines` policy lines: users with roles and group memberships, installed apps, per-app grants
 * a user consented to (literal user paths, as docs/rbac.md says they must be), per-user shares of folders, and group
 * folders. Users and apps scale with the policy, so each subject holds about as many grants at 10,000 lines as at
 * 1,000: a larger policy means a larger zone, not one user with thousands of rules.
 */
function generateZone(totalLines: number, baseLines: number, random: () => number): Zone {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const tailLines = totalLines - baseLines;
  const users = Array.from({ length: Math.max(10, Math.round(tailLines * 0.05)) }, (_, i) => `u${String(i).padStart(5, '0')}`);
  const groups = Array.from({ length: Math.ceil(users.length / 10) }, (_, i) => `grp-${String(i).padStart(4, '0')}`);
  const apps = Array.from({ length: Math.max(5, Math.round(tailLines * 0.02)) }, (_, i) => `app-${String(i).padStart(4, '0')}`);
  const lines = new Set<string>();
  users.forEach((u, i) => {
    const r = random();
    const role = i === 0 || r < 0.02 ? 'admin' : r < 0.12 ? 'limited' : r < 0.17 ? 'guest' : 'user';
    lines.add(`g, ${u}, ${role}`);
    lines.add(`g, ${u}, ${groups[i % groups.length]}`);
  });
  for (const g of groups) lines.add(`p, ${g}, obj://dfs/main/groups/${g}/**, read|write|create`);
  for (const a of apps) lines.add(`g2, ${a}, app`);
  const appGrants: Zone['appGrants'] = [];
  const shares: Zone['shares'] = [];
  while (lines.size < tailLines) {
    if (random() < 0.5) {
      const grant = { app: pick(apps), owner: pick(users), folder: pick(FOLDERS) };
      const actions = random() < 0.7 ? 'read' : 'read|write|create';
      const before = lines.size;
      lines.add(`p2, ${grant.app}, obj://dfs/main/home/${grant.owner}/${grant.folder}/**, ${actions}`);
      if (lines.size > before) appGrants.push(grant);
    } else {
      const share = { user: pick(users), owner: pick(users), folder: `${pick(FOLDERS)}/shared-${Math.floor(random() * 20)}` };
      if (share.user === share.owner) continue;
      const actions = random() < 0.7 ? 'read' : 'read|write';
      const before = lines.size;
      lines.add(`p, ${share.user}, obj://dfs/main/home/${share.owner}/${share.folder}/**, ${actions}`);
      if (lines.size > before) shares.push(share);
    }
  }
  return { tail: [...lines].join('\n'), users, apps, groups, appGrants, shares };
}

/** Requests as a zone makes them: mostly aimed at something a rule mentions, with both outcomes well represented. */
function generateRequests(zone: Zone, count: number, random: () => number): AccessRequest[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const action = () => pick(['read', 'read', 'read', 'write', 'create', 'delete', 'exec']);
  const file = () => `f${Math.floor(random() * 1000)}.dat`;
  const makers: (() => AccessRequest)[] = [
    // An app using what its user consented to, sometimes on behalf of another user or outside the grant.
    () => {
      const g = pick(zone.appGrants);
      const user = random() < 0.8 ? g.owner : pick(zone.users);
      return { user, app: g.app, resource: `obj://dfs/main/home/${g.owner}/${g.folder}/${file()}`, action: action() };
    },
    // A user opening a folder shared with them, through the UI or the CLI.
    () => {
      const s = pick(zone.shares);
      const user = random() < 0.8 ? s.user : pick(zone.users);
      return { user, app: pick(UI_APPS), resource: `obj://dfs/main/home/${s.owner}/${s.folder}/${file()}`, action: action() };
    },
    // An app on its own data folder, in its own user's home or someone else's.
    () => {
      const app = pick(zone.apps);
      const user = pick(zone.users);
      const owner = random() < 0.7 ? user : pick(zone.users);
      return { user, app, resource: `obj://dfs/main/home/${owner}/apps/${app}/db/${file()}`, action: action() };
    },
    // The control panel reading and writing config keys for a user.
    () => {
      const user = pick(zone.users);
      const owner = random() < 0.6 ? user : pick(zone.users);
      const key = pick([
        `users/${owner}/apps/${pick(zone.apps)}/settings/theme`,
        `users/${owner}/settings`,
        `devices/ood1/info`,
        `boot/config`,
        `services/${pick(KERNEL)}/info`,
        `system/rbac/policy`,
        `storage/volumes/main`,
      ]);
      return { user, app: 'control-panel', resource: `obj://config/${key}`, action: action() };
    },
    // Group folders, by members and non-members.
    () => ({
      user: pick(zone.users),
      app: pick(UI_APPS),
      resource: `obj://dfs/main/groups/${pick(zone.groups)}/${file()}`,
      action: action(),
    }),
    // Kernel services calling as themselves.
    () => {
      const svc = pick(KERNEL);
      return { user: svc, app: svc, resource: `obj://config/nodes/ood1/config`, action: action() };
    },
  ];
  const weights = [0.3, 0.25, 0.15, 0.15, 0.1, 0.05];
  return Array.from({ length: count }, () => {
    let r = random();
    for (let i = 0; i < weights.length; i++) {
      if ((r -= weights[i]) < 0) return makers[i]();
    }
    return makers[makers.length - 1]();
  });
}

interface Timing {
  checks: number;
  meanMs: number;
  p99Ms: number;
}

function timeOurs(rbac: Rbac, requests: readonly AccessRequest[]): { timing: Timing; allowed: number } {
  let allowed = 0;
  let next = 0;
  const batch = (): void => {
    for (let i = 0; i < OURS_BATCH; i++) {
      if (rbac.check(requests[next])) allowed++;
      next = next + 1 === requests.length ? 0 : next + 1;
    }
  };
  const warmUntil = Date.now() + 500;
  while (Date.now() < warmUntil) batch();
  const perCheck: number[] = [];
  let totalNs = 0n;
  const end = Date.now() + OURS_MEASURE_MS;
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    batch();
    const ns = process.hrtime.bigint() - t0;
    totalNs += ns;
    perCheck.push(Number(ns) / 1e6 / OURS_BATCH);
  }
  perCheck.sort((a, b) => a - b);
  const checks = perCheck.length * OURS_BATCH;
  return { timing: { checks, meanMs: Number(totalNs) / 1e6 / checks, p99Ms: percentile(perCheck, 0.99) }, allowed };
}

async function measure(totalLines: number, baseLines: number) {
  const random = rng(totalLines);
  const zone = generateZone(totalLines, baseLines, random);
  const rbac = await Rbac.create(zone.tail);
  const policy = rbac.policyText();
  const lines = parsePolicyCsv(policy).length;
  const reference = await casbinReference(policy);
  const requests = generateRequests(zone, REQUESTS, random);

  for (let i = 0; i < 20; i++) reference(requests[i]);
  const casbinTimes: number[] = [];
  const answered: AccessRequest[] = [];
  const deadline = Date.now() + CASBIN_BUDGET_MS;
  for (const req of requests) {
    if (answered.length >= CASBIN_MIN_CHECKS && Date.now() > deadline) break;
    const t0 = process.hrtime.bigint();
    const theirs = reference(req);
    casbinTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (theirs !== rbac.check(req)) throw new Error(`Rbac.check disagrees with casbin on ${JSON.stringify(req)}`);
    answered.push(req);
  }
  const casbinMean = casbinTimes.reduce((a, b) => a + b, 0) / casbinTimes.length;
  casbinTimes.sort((a, b) => a - b);
  const casbin: Timing = { checks: casbinTimes.length, meanMs: casbinMean, p99Ms: percentile(casbinTimes, 0.99) };

  // Ours answers exactly the requests casbin answered, so both see the same mix of allowed and denied.
  const ours = timeOurs(rbac, answered);
  const allowedShare = answered.filter((r) => rbac.check(r)).length / answered.length;
  return { totalLines, lines, zone, ours: ours.timing, casbin, allowedShare };
}

const ms = (x: number) => x.toPrecision(3);

export async function main(): Promise<void> {
  const baseLines = parsePolicyCsv(DEFAULT_POLICY).length;
  console.log('rbac-check: Rbac.check vs stock casbin enforceSync (user side AND app side) on the same policy');
  console.log(`  ${machineLine()}; base policy ${baseLines} rule lines, the rest a generated tail`);
  console.log(`  ours: mean over ${OURS_MEASURE_MS / 1000} s of checks, p99 over batches of ${OURS_BATCH}; casbin: each check timed alone, up to ${CASBIN_BUDGET_MS / 1000} s`);
  const results = [];
  for (const size of SIZES) {
    const r = await measure(size, baseLines);
    console.log(
      `  ${fmt(r.lines)} lines: ${r.zone.users.length} users, ${r.zone.groups.length} groups, ${r.zone.apps.length} apps, ` +
        `${r.zone.appGrants.length} app grants, ${r.zone.shares.length} shares; ${r.casbin.checks} requests, ` +
        `${Math.round(r.allowedShare * 100)}% allowed, answers identical`,
    );
    results.push(r);
  }
  console.log('');
  console.log(
    table(
      ['policy lines', 'ours mean ms', 'ours p99 ms', 'casbin mean ms', 'casbin p99 ms', 'casbin/ours'],
      results.map((r) => [
        fmt(r.lines),
        ms(r.ours.meanMs),
        ms(r.ours.p99Ms),
        ms(r.casbin.meanMs),
        ms(r.casbin.p99Ms),
        fmt(r.casbin.meanMs / r.ours.meanMs),
      ]),
    ),
  );
  const at1000 = results.find((r) => r.totalLines === 1000)!;
  console.log('');
  console.log(
    `rbac check at 1000 lines: ${ms(at1000.ours.meanMs)} ms mean (target <= ${TARGET_MS} ms); ratio casbin/ours: ${Math.round(at1000.casbin.meanMs / at1000.ours.meanMs)}`,
  );
}
