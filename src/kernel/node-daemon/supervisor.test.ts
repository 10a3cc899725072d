// The Supervisor against real child processes: small Node scripts in a temporary directory that serve /health,
// crash at once, stop answering, or ignore SIGTERM.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type ChildSpec, type ChildStatus, Supervisor, type SupervisorOptions } from './supervisor.ts';
import { pidAlive } from '../../lib/sysinfo.ts';
import { freePort } from '../../../test/support/ports.ts';

const SCRIPTS = {
  // Serves /health until the sick file holds its own pid; then it hangs, like a process stuck in a busy loop.
  'server.cjs': `
    const http = require('node:http');
    const fs = require('node:fs');
    const [port, sickFile] = process.argv.slice(2);
    http.createServer((req, res) => {
      let sick = false;
      try { sick = fs.readFileSync(sickFile, 'utf8') === String(process.pid); } catch {}
      if (sick) return;
      res.end('ok');
    }).listen(Number(port), '127.0.0.1');
  `,
  'crash.cjs': `process.exit(3);`,
  // The handler is installed before the port opens, so once healthy it is sure to ignore SIGTERM.
  'stubborn.cjs': `
    process.on('SIGTERM', () => {});
    require('node:http').createServer((req, res) => res.end('ok')).listen(Number(process.argv[2]), '127.0.0.1');
  `,
};

async function until<T>(get: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Supervisor with real child processes', () => {
  let dir: string;
  const supervisors: Supervisor[] = [];
  const logger = pino({ level: 'silent' });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'supervisor-'));
    for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(join(dir, name), text);
  });
  after(async () => {
    for (const s of supervisors) await s.stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A supervisor whose onChange records a status snapshot of the child that changed, taken at that moment. */
  function supervisor(opts: Omit<SupervisorOptions, 'logger' | 'onChange'>) {
    const changes: ChildStatus[] = [];
    const sup: Supervisor = new Supervisor({
      logger,
      healthIntervalMs: 100,
      ...opts,
      onChange: (name) => {
        const s = sup.statuses().find((c) => c.name === name);
        if (s) changes.push(s);
      },
    });
    supervisors.push(sup);
    return { sup, changes, status: (name: string) => sup.statuses().find((c) => c.name === name) };
  }

  function spec(name: string, script: keyof typeof SCRIPTS, port?: number): ChildSpec {
    return {
      name,
      command: process.execPath,
      args: [join(dir, script), String(port ?? 0), join(dir, `${name}.sick`)],
      healthUrl: port === undefined ? undefined : `http://127.0.0.1:${port}/health`,
      stderrDir: join(dir, 'logs', name),
    };
  }

  it('restarts a crashing child with a growing back-off', async () => {
    const { sup, changes } = supervisor({ backoffBaseMs: 150, backoffMaxMs: 60_000, stableAfterMs: 60_000 });
    sup.start(spec('crasher', 'crash.cjs'));
    const exits = await until(() => {
      const e = changes.filter((c) => c.name === 'crasher' && c.lastExit);
      return e.length >= 5 && e;
    }, 'five exits of the crashing child');
    await sup.stopAll();

    assert.deepEqual(exits.slice(0, 5).map((e) => e.restarts), [0, 1, 2, 3, 4]);
    assert.ok(exits.every((e) => e.lastExit!.code === 3 && e.pid === null));
    // Each snapshot holds the start of the run that just ended, so start(n+1) - exit(n) is the back-off waited.
    const delays = exits.slice(0, 5).slice(1).map((e, i) => e.startedAt! - exits[i].lastExit!.at);
    for (let i = 1; i < delays.length; i++) {
      assert.ok(delays[i] > delays[i - 1], `back-off grows: ${delays.join(', ')} ms`);
    }
  });

  it('waitHealthy resolves once a child answers /health, and statuses report pid and rss', async () => {
    const { sup, status } = supervisor({ startGraceMs: 10_000 });
    const port = await freePort();
    sup.start(spec('web', 'server.cjs', port));
    await sup.waitHealthy('web', 20_000);
    const s = status('web')!;
    assert.equal(s.state, 'running');
    assert.equal(s.healthy, true);
    assert.ok(s.pid && pidAlive(s.pid));
    assert.ok(s.rssBytes !== null && s.rssBytes > 0, `rss reported: ${s.rssBytes}`);
    assert.equal(s.restarts, 0);
    // Already healthy: answers at once.
    await sup.waitHealthy('web', 1);
    await sup.stopAll();
    assert.equal(pidAlive(s.pid!), false);
  });

  it('waitHealthy rejects when a child never becomes healthy', async () => {
    const { sup } = supervisor({ backoffBaseMs: 50 });
    sup.start(spec('never', 'crash.cjs', await freePort()));
    await assert.rejects(sup.waitHealthy('never', 300), /never did not become healthy within 300 ms/);
    await sup.stopAll();
  });

  it('restarts a child killed from outside, and it becomes healthy again', async () => {
    const { sup, status } = supervisor({ backoffBaseMs: 50, startGraceMs: 10_000 });
    sup.start(spec('victim', 'server.cjs', await freePort()));
    await sup.waitHealthy('victim', 20_000);
    const first = status('victim')!.pid!;
    process.kill(first, 'SIGKILL');
    const s = await until(() => {
      const c = status('victim');
      return c && c.healthy && c.pid !== first && c;
    }, 'the killed child restarted and healthy');
    assert.equal(s.restarts, 1);
    assert.deepEqual({ code: s.lastExit!.code, signal: s.lastExit!.signal }, { code: null, signal: 'SIGKILL' });
    await sup.stopAll();
  });

  it('kills and restarts a child that stops answering health checks', async () => {
    const { sup, status, changes } = supervisor({ healthFailures: 3, startGraceMs: 500, backoffBaseMs: 50 });
    sup.start(spec('hang', 'server.cjs', await freePort()));
    await sup.waitHealthy('hang', 20_000);
    const first = status('hang')!.pid!;
    writeFileSync(join(dir, 'hang.sick'), String(first));
    const s = await until(() => {
      const c = status('hang');
      return c && c.healthy && c.pid !== first && c;
    }, 'the hung child replaced by a healthy one');
    assert.equal(pidAlive(first), false);
    assert.equal(s.restarts, 1);
    const exit = changes.find((c) => c.name === 'hang' && c.lastExit);
    assert.equal(exit?.lastExit?.signal, 'SIGKILL', 'the supervisor killed the hung child');
    await sup.stopAll();
  });

  it('stopAll stops children in reverse start order and SIGKILLs one that ignores SIGTERM', async () => {
    const { sup, changes } = supervisor({ stopGraceMs: 300, startGraceMs: 10_000 });
    sup.start(spec('first', 'server.cjs', await freePort()));
    sup.start(spec('stubborn', 'stubborn.cjs', await freePort()));
    sup.start(spec('last', 'server.cjs', await freePort()));
    for (const n of ['first', 'stubborn', 'last']) await sup.waitHealthy(n, 20_000);
    const pids = sup.statuses().map((c) => c.pid!);
    await sup.stopAll();

    const exits = changes.filter((c) => c.lastExit);
    assert.deepEqual(exits.map((c) => c.name), ['last', 'stubborn', 'first']);
    assert.deepEqual(
      exits.map((c) => c.lastExit!.signal),
      ['SIGTERM', 'SIGKILL', 'SIGTERM'],
    );
    assert.deepEqual(sup.statuses(), []);
    for (const pid of pids) assert.equal(pidAlive(pid), false, `child ${pid} stopped`);
  });
});
