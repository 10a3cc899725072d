// Resident memory of an idle single-device zone: the built `buckyos node` daemon and every kernel child it supervises,
// started by the test harness (test/support/zone.ts), activated as an owner would, then left alone. The anchor is a
// bare `node` that only keeps a timer, idling through the same period and measured the same way at the same moment,
// so the report separates what Node itself costs per process from what our code adds.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { activateDevice } from '../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../src/lib/identity/mnemonic.ts';
import { KERNEL_BOOT_ORDER } from '../src/kernel/node-daemon/main.ts';
import { OPT_IN_KERNEL_SERVICES } from '../src/lib/config/node-config.ts';

/** What an idle zone runs: the opt-in services (DNS, storage) run only once configured. */
const IDLE_KERNEL = KERNEL_BOOT_ORDER.filter((s) => !OPT_IN_KERNEL_SERVICES.has(s));
import { startZone } from '../test/support/zone.ts';
import { ensureBuilt } from './support/build.ts';
import { fmt, machineLine, table } from './support/measure.ts';

const IDLE_MS = 20_000;
const TARGET_MB = 350;
const MB = 1024 * 1024;
const ZONE = 'bench.example.com';
const OWNER = 'alice';
const PASSWORD = 'correct-Horse-battery-9';

interface Memory {
  rssBytes: number;
  pssBytes: number | null;
}

/** VmRSS from /proc/<pid>/status; PSS (shared pages divided among their sharers) from smaps_rollup where readable. */
function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!rss) throw new Error(`/proc/${pid}/status has no VmRSS (a kernel thread or a zombie?)`);
  let pssBytes: number | null = null;
  try {
    const pss = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    if (pss) pssBytes = Number(pss[1]) * 1024;
  } catch {
    // Older kernels lack smaps_rollup; PSS is informative only.
  }
  return { rssBytes: Number(rss[1]) * 1024, pssBytes };
}

/** Every live descendant of `root`, so that a helper a kernel service forks cannot hide from the total. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name is parenthesised and may hold spaces; the parent pid is the second field after it.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // The process exited while we looked.
    }
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(0, 4).join(' ');
  } catch {
    return '?';
  }
}

function startAnchor(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
}

const mb = (bytes: number) => fmt(bytes / MB, 1);

interface Measured {
  procs: { name: string; pid: number; mem: Memory }[];
  anchor: { pid: number; mem: Memory };
}

/** Starts, activates, idles, measures and always tears down the zone and the anchor. */
async function measureIdleZone(): Promise<Measured> {
  // The zone's embedded defaults (info logs, 10 s heartbeats): what an idle installation runs.
  const zone = await startZone({ defaults: true });
  let anchor: ChildProcess | null = null;
  try {
    const t0 = Date.now();
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: ZONE, owner: OWNER, password: PASSWORD, deviceName: 'ood1' });
    const healthy = (s: NonNullable<ReturnType<typeof zone.status>>) =>
      s.state === 'running' &&
      IDLE_KERNEL.every((name) => s.children.some((c) => c.name === name && c.healthy && c.pid !== null));
    const booted = await zone.waitFor(healthy, 120_000, 'every kernel service healthy');
    console.log(`  activated and healthy after ${fmt((Date.now() - t0) / 1000, 1)} s; idling`);

    anchor = startAnchor();
    await new Promise((r) => setTimeout(r, IDLE_MS));

    const now = zone.status();
    if (now === null || !healthy(now)) throw new Error(`zone is not healthy after idling: ${JSON.stringify(now)}`);
    const restarted = now.children.filter((c) => c.restarts > (booted.children.find((b) => b.name === c.name)?.restarts ?? 0));
    if (restarted.length > 0) throw new Error(`kernel services restarted while idle: ${restarted.map((c) => c.name).join(', ')}`);

    const listed = [{ name: 'node-daemon', pid: now.pid }, ...now.children.map((c) => ({ name: c.name, pid: c.pid! }))];
    const known = new Set(listed.map((p) => p.pid));
    const others = descendants(now.pid)
      .filter((pid) => !known.has(pid))
      .map((pid) => ({ name: `other: ${commandOf(pid)}`, pid }));
    return {
      procs: [...listed, ...others].map((p) => ({ ...p, mem: memoryOf(p.pid) })),
      anchor: { pid: anchor.pid!, mem: memoryOf(anchor.pid!) },
    };
  } finally {
    anchor?.kill('SIGKILL');
    await zone.destroy();
  }
}

export async function main(): Promise<void> {
  console.log('idle-memory: resident memory of an idle, activated single-device zone');
  ensureBuilt();
  console.log(`  ${machineLine()}; zone ${ZONE}, owner ${OWNER}; idle ${IDLE_MS / 1000} s after every kernel service is healthy`);
  // The zone is gone before anything is printed, so nothing it says while stopping lands after the result line.
  const { procs, anchor } = await measureIdleZone();
  const bare = anchor.mem;
  const totalRss = procs.reduce((s, p) => s + p.mem.rssBytes, 0);
  const overhead = totalRss - procs.length * bare.rssBytes;
  const pss = procs.every((p) => p.mem.pssBytes !== null) ? mb(procs.reduce((s, p) => s + p.mem.pssBytes!, 0)) : '-';
  console.log('');
  console.log(
    table(
      ['process', 'pid', 'VmRSS MB', 'over bare node MB', 'PSS MB'],
      [
        ...procs.map((p) => [
          p.name,
          String(p.pid),
          mb(p.mem.rssBytes),
          mb(p.mem.rssBytes - bare.rssBytes),
          p.mem.pssBytes === null ? '-' : mb(p.mem.pssBytes),
        ]),
        ['total', '', mb(totalRss), mb(overhead), pss],
        ['anchor: bare node -e "setInterval(...)"', String(anchor.pid), mb(bare.rssBytes), '0.0', bare.pssBytes === null ? '-' : mb(bare.pssBytes)],
      ],
    ),
  );
  console.log('');
  console.log(
    `  ${procs.length} processes; as many bare node processes would hold ${mb(procs.length * bare.rssBytes)} MB, ` +
      `so our code adds ${mb(overhead)} MB (${mb(overhead / procs.length)} MB per process)`,
  );
  console.log('');
  console.log(`idle single-device zone RSS: ${mb(totalRss)} MB (target <= ${TARGET_MB} MB)`);
}
