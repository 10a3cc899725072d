// The multi-device network harness itself: real namespaces, bridges and NAT, checked with real TCP connections from
// inside the devices, and checked to leave nothing behind.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  NET_PREFIX,
  NetExecError,
  REGISTRY_DIR,
  natTableName,
  netnsUnavailableReason,
  startNet,
  type TestNet,
} from './support/netns.ts';

const skip = netnsUnavailableReason() ?? false;
const NODE = process.execPath;
const REPO = fileURLToPath(new URL('..', import.meta.url));
const PORT = 7000;
// Short enough that failures come back fast, long enough for a loaded 2-core machine to connect on a working link.
const CONNECT_TIMEOUT_MS = 1500;

// Answers every connection with the address it came from, as the server sees it.
const ECHO_SERVER = `
const server = require('node:net').createServer((s) => s.end(s.remoteAddress + '\\n'));
server.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
`;
// Prints what the server answered; exits non-zero, saying why, when the connection fails or times out.
const CLIENT = `
const [host, port, timeout] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port), timeout: Number(timeout) });
let answer = '';
s.setEncoding('utf8').on('data', (d) => (answer += d));
s.on('end', () => process.stdout.write(answer.trim()));
s.on('timeout', () => { console.error('connecting to ' + host + ':' + port + ' timed out'); process.exit(2); });
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

function waitForLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.split('\n').includes(line)) resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`exited (${code ?? signal}) before printing "${line}": ${err}`)),
    );
  });
}

async function startEcho(net: TestNet, device: string): Promise<ChildProcess> {
  const server = net.spawn(device, NODE, ['-e', ECHO_SERVER, String(PORT)]);
  await waitForLine(server, 'listening');
  return server;
}

/** Connects from inside `from` and resolves the address the echo server saw. */
function connectFrom(net: TestNet, from: string, host: string): Promise<string> {
  return net.exec(from, NODE, ['-e', CLIENT, host, String(PORT), String(CONNECT_TIMEOUT_MS)]);
}

/** Connects from the test process itself (the root namespace). */
function connectFromHost(host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port: PORT, timeout: CONNECT_TIMEOUT_MS });
    let answer = '';
    s.setEncoding('utf8').on('data', (d: string) => (answer += d));
    s.on('end', () => resolve(answer.trim()));
    s.on('timeout', () => {
      s.destroy();
      reject(new Error(`connecting to ${host}:${PORT} timed out`));
    });
    s.on('error', reject);
  });
}

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

function netPids(ns: string): string {
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).trim();
}

/** Gone, or a zombie nobody reaps (pid 1 in a container need not): either way it no longer runs. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** A separate test process owning a net, to see what happens to the net when that process ends. */
function startOwner(body: string): ChildProcessByStdio<null, Readable, null> {
  const script = `import { startNet } from ${JSON.stringify(new URL('./support/netns.ts', import.meta.url).href)};\n${body}`;
  return spawn(NODE, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
}

function assertNothingLeft(id: string): void {
  assert.deepEqual(
    namespaces().filter((ns) => ns.startsWith(`${NET_PREFIX}${id}`)),
    [],
    `namespaces of net ${id} remain`,
  );
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[];
  assert.deepEqual(
    links.map((l) => l.ifname).filter((n) => n.startsWith(`${NET_PREFIX}${id}`)),
    [],
    `host links of net ${id} remain`,
  );
  const tables = execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
  assert.ok(!tables.includes(natTableName(id)), `nft table of net ${id} remains`);
  assert.ok(!existsSync(`${REGISTRY_DIR}/${id}.json`), `claim file of net ${id} remains`);
}

describe('test network harness', { skip, timeout: 180_000 }, () => {
  describe('home LAN', () => {
    let net: TestNet;
    const names = ['ood1', 'node2', 'node3'];
    before(async () => {
      net = await startNet({ devices: names.map((name) => ({ name })) });
      await Promise.all(names.map((n) => startEcho(net, n)));
    });
    after(() => net?.destroy());

    it('gives every device its own address on one /24', () => {
      const ips = names.map((n) => net.device(n).ip);
      assert.equal(new Set(ips).size, names.length);
      const prefix = net.subnets.home.replace(/\.0\/24$/, '.');
      for (const ip of ips) assert.ok(ip.startsWith(prefix), `${ip} is not in ${net.subnets.home}`);
      assert.equal(net.subnets.public, null);
      assert.equal(net.router, null);
    });

    it("connects every pair over TCP, each seeing the other's own address", async () => {
      const pairs = names.flatMap((from) => names.filter((to) => to !== from).map((to) => [from, to] as const));
      for (const [from, to] of pairs) {
        assert.equal(await connectFrom(net, from, net.device(to).ip), net.device(from).ip, `${from} -> ${to}`);
      }
    });

    it('names an unknown device', () => {
      assert.throws(() => net.device('nas9'), /no device "nas9".*ood1, node2, node3/);
    });

    it('rejects a failed command with its stderr and exit code', async () => {
      await assert.rejects(net.exec('ood1', 'sh', ['-c', 'echo disk on fire >&2; exit 3']), (e: NetExecError) => {
        assert.ok(e instanceof NetExecError);
        assert.equal(e.code, 3);
        assert.equal(e.stderr.trim(), 'disk on fire');
        assert.match(e.message, /ood1: sh .* exited with code 3: disk on fire/);
        return true;
      });
    });

    it('a cut link fails connections both ways, and restore brings it back', async () => {
      await net.cut('node2');
      await assert.rejects(connectFrom(net, 'ood1', net.device('node2').ip), NetExecError);
      await assert.rejects(connectFrom(net, 'node2', net.device('ood1').ip), NetExecError);
      // The device cannot bring its own side back: the link is down in the hub, out of its reach.
      await net.exec('node2', 'ip', ['link', 'set', 'eth0', 'up']);
      await assert.rejects(connectFrom(net, 'ood1', net.device('node2').ip), NetExecError);
      // The other devices are unaffected.
      assert.equal(await connectFrom(net, 'ood1', net.device('node3').ip), net.device('ood1').ip);
      await net.restore('node2');
      assert.equal(await connectFrom(net, 'ood1', net.device('node2').ip), net.device('ood1').ip);
      assert.equal(await connectFrom(net, 'node2', net.device('ood1').ip), net.device('node2').ip);
    });

    it('killAll SIGKILLs everything in the device, tracked or not', async () => {
      const tracked = net.spawn('node3', 'sleep', ['1000']);
      // A process the harness did not start itself, as a daemon's child would be.
      const untracked = Number((await net.exec('node3', 'sh', ['-c', 'sleep 1000 >/dev/null 2>&1 & echo $!'])).trim());
      assert.ok(!processGone(untracked));
      await net.killAll('node3');
      assert.equal(tracked.signalCode, 'SIGKILL');
      assert.ok(processGone(untracked), `pid ${untracked} survived killAll`);
      assert.equal(netPids(net.device('node3').ns), '');
      // The echo server went with it: the device is powered off.
      await assert.rejects(connectFrom(net, 'ood1', net.device('node3').ip), NetExecError);
      // ...and it can be powered on again.
      await startEcho(net, 'node3');
      assert.equal(await connectFrom(net, 'ood1', net.device('node3').ip), net.device('ood1').ip);
    });
  });

  describe('home LAN behind NAT, with a public host', () => {
    let net: TestNet;
    before(async () => {
      net = await startNet({
        devices: [{ name: 'ood1' }, { name: 'node2' }, { name: 'gw', site: 'public' }],
        nat: true,
        host: 'home',
      });
      await Promise.all(['ood1', 'node2', 'gw'].map((n) => startEcho(net, n)));
    });
    after(() => net?.destroy());

    it('puts home devices on the LAN and public ones on the internet segment', () => {
      assert.ok(net.router);
      assert.ok(net.subnets.public);
      assert.equal(net.device('ood1').site, 'home');
      assert.equal(net.device('gw').site, 'public');
      assert.ok(net.device('gw').ip.startsWith(net.subnets.public.replace(/0\/24$/, '')));
      assert.ok(net.device('ood1').ip.startsWith(net.subnets.home.replace(/0\/24$/, '')));
    });

    it("a public host sees home connections coming from the router's public address", async () => {
      assert.equal(await connectFrom(net, 'ood1', net.device('gw').ip), net.router!.publicIp);
      assert.equal(await connectFrom(net, 'node2', net.device('gw').ip), net.router!.publicIp);
    });

    it('home devices reach each other directly', async () => {
      assert.equal(await connectFrom(net, 'ood1', net.device('node2').ip), net.device('ood1').ip);
    });

    it('a public host cannot open connections to a home device, even with a route through the router', async () => {
      await assert.rejects(connectFrom(net, 'gw', net.device('ood1').ip), NetExecError);
      await net.exec('gw', 'ip', ['route', 'add', net.subnets.home, 'via', net.router!.publicIp]);
      await assert.rejects(connectFrom(net, 'gw', net.device('ood1').ip), NetExecError);
    });

    it('the test process joins at home: it reaches home devices directly and public ones through the NAT', async () => {
      assert.equal(await connectFromHost(net.device('ood1').ip), net.hostIp);
      assert.equal(await connectFromHost(net.device('gw').ip), net.router!.publicIp);
    });

    it('cutting a home device leaves the rest of the home online', async () => {
      await net.cut('ood1');
      await assert.rejects(connectFrom(net, 'ood1', net.device('gw').ip), NetExecError);
      assert.equal(await connectFrom(net, 'node2', net.device('gw').ip), net.router!.publicIp);
      await net.restore('ood1');
      assert.equal(await connectFrom(net, 'ood1', net.device('gw').ip), net.router!.publicIp);
    });
  });

  describe('two nets at once', () => {
    let a: TestNet;
    let b: TestNet;
    before(async () => {
      [a, b] = await Promise.all([
        startNet({ devices: [{ name: 'n1' }, { name: 'n2' }] }),
        startNet({ devices: [{ name: 'n1' }, { name: 'n2' }] }),
      ]);
      await Promise.all([a, b].flatMap((net) => ['n1', 'n2'].map((n) => startEcho(net, n))));
    });
    after(async () => {
      await a?.destroy();
      await b?.destroy();
    });

    it('get their own ids and addresses', () => {
      assert.notEqual(a.id, b.id);
      assert.notEqual(a.subnets.home, b.subnets.home);
      assert.notEqual(a.device('n1').ns, b.device('n1').ns);
    });

    it('cannot reach each other, and one going away leaves the other working', async () => {
      assert.equal(await connectFrom(a, 'n1', a.device('n2').ip), a.device('n1').ip);
      assert.equal(await connectFrom(b, 'n1', b.device('n2').ip), b.device('n1').ip);
      await assert.rejects(connectFrom(a, 'n1', b.device('n2').ip), NetExecError);
      await a.cut('n2');
      assert.equal(await connectFrom(b, 'n1', b.device('n2').ip), b.device('n1').ip);
      await a.destroy();
      assert.equal(await connectFrom(b, 'n2', b.device('n1').ip), b.device('n2').ip);
    });
  });

  describe('cleanup', () => {
    it('destroy() removes namespaces, links, the nft table and processes, and may be called again', async () => {
      const net = await startNet({
        devices: [{ name: 'ood1' }, { name: 'gw', site: 'public' }],
        nat: true,
        host: 'public',
      });
      const routerTables = execFileSync('ip', ['netns', 'exec', net.router!.ns, 'nft', 'list', 'tables'], { encoding: 'utf8' });
      assert.ok(routerTables.includes(natTableName(net.id)));
      const server = await startEcho(net, 'gw');
      assert.equal(await connectFromHost(net.device('gw').ip), net.hostIp);
      const exec = net.exec('ood1', 'sleep', ['1000']).catch((e: unknown) => e);
      await net.destroy();
      await net.destroy();
      assert.equal(server.signalCode, 'SIGKILL');
      assert.ok((await exec) instanceof NetExecError);
      assertNothingLeft(net.id);
      assert.throws(() => net.spawn('ood1', 'true', []), /destroyed/);
    });

    it('a net whose process was SIGKILLed is removed by the next startNet, processes and all', async () => {
      const child = startOwner(`
        const net = await startNet({ devices: [{ name: 'a' }, { name: 'b', site: 'public' }], nat: true, host: 'home' });
        const sleeper = net.spawn('a', 'sleep', ['1000']);
        console.log(JSON.stringify({ id: net.id, pid: sleeper.pid }));
        setInterval(() => {}, 1000);
      `);
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.setEncoding('utf8').once('data', (d: string) => resolve(d.trim()));
        child.once('exit', (code) => reject(new Error(`the net's owner exited (${code}) before starting it`)));
      });
      const { id, pid } = JSON.parse(line) as { id: string; pid: number };
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      assert.ok(namespaces().some((ns) => ns.startsWith(`${NET_PREFIX}${id}`)), 'the killed owner left nothing behind');
      assert.ok(!processGone(pid));

      const next = await startNet({ devices: [{ name: 'a' }] });
      await next.destroy();
      assertNothingLeft(id);
      // SIGKILL is delivered asynchronously: the process is gone a moment after the kill, not at the instant of it.
      for (let i = 0; i < 50 && !processGone(pid); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(processGone(pid), `pid ${pid} in the dead net survived`);
    });

    for (const how of ['exit', 'SIGTERM'] as const) {
      it(`a net is removed when its process ends by ${how} without destroy()`, async () => {
        const child = startOwner(`
          const net = await startNet({ devices: [{ name: 'a' }], host: 'home' });
          net.spawn('a', 'sleep', ['1000']);
          console.log(net.id);
          ${how === 'exit' ? 'process.exit(0);' : "setInterval(() => {}, 1000); process.kill(process.pid, 'SIGTERM');"}
        `);
        let id = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (id += d));
        const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
          child.once('exit', (c, s) => resolve([c, s])),
        );
        if (how === 'exit') assert.equal(code, 0);
        else assert.equal(signal, 'SIGTERM', 'the signal no longer ends the process after cleanup');
        assert.match(id.trim(), /^[0-9a-f]{4}$/);
        assertNothingLeft(id.trim());
      });
    }
  });
});
