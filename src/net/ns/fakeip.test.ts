// The fake-ip pool against real SQLite files: stable and persistent mappings (a killed process included), 65,536 of
// them reloaded, LRU recycling, Clash's filter patterns, and clear errors for bad input and for files not ours.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FakeIpError, FakeIpFilter, FakeIpPool, filterPatternProblem, loadFakeIpFilter, parsePoolCidr } from './fakeip.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fakeip-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
const dbPath = () => join(dir, `pool-${++files}.db`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits until the clock has moved on by a millisecond, so two uses have different times. */
async function nextMs(): Promise<void> {
  const t = Date.now();
  while (Date.now() === t) await sleep(1);
}

describe('FakeIpPool mappings', () => {
  it('gives a name one address, whatever its case or trailing dot, and maps it back', () => {
    const pool = FakeIpPool.open({ dbFile: ':memory:' });
    try {
      const a = pool.assign('www.example.com');
      assert.equal(a, '198.18.0.2', 'the network and the gateway address are not handed out');
      assert.equal(pool.assign('WWW.Example.COM.'), a);
      const b = pool.assign('api.example.com');
      assert.equal(b, '198.18.0.3');
      assert.equal(pool.lookup(a)?.name, 'www.example.com');
      assert.equal(pool.lookup(`::ffff:${b}`)?.name, 'api.example.com', 'the form a dual-stack socket reports');
      assert.equal(pool.lookup('198.18.0.200'), undefined, 'an address no name has');
      assert.equal(pool.lookup('198.18.0.1'), undefined, 'the gateway address');
      assert.equal(pool.ttl, 1);
      assert.deepEqual(pool.stats(), { cidr: '198.18.0.0/15', size: 2, capacity: 131069, recycled: 0, dropped: 0, unflushed: 2 });
    } finally {
      pool.close();
    }
  });

  it('keeps every mapping across close and open, and hands out no address twice', () => {
    const dbFile = dbPath();
    const names = ['a.example', 'b.example', 'c.example'];
    let pool = FakeIpPool.open({ dbFile, cidr: '10.10.0.0/16' });
    const addrs = names.map((n) => pool.assign(n));
    const first = pool.lookup(addrs[0])!;
    pool.close();
    pool = FakeIpPool.open({ dbFile, cidr: '10.10.0.0/16' });
    try {
      assert.deepEqual(names.map((n) => pool.assign(n)), addrs);
      const again = pool.lookup(addrs[0])!;
      assert.equal(again.name, 'a.example');
      assert.equal(again.assigned_at, first.assigned_at);
      assert.ok(again.last_used >= first.last_used);
      const d = pool.assign('d.example');
      assert.ok(!addrs.includes(d), `${d} is new`);
      assert.equal(pool.stats().size, 4);
    } finally {
      pool.close();
    }
  });

  it('holds 65,536 mappings, persisted and reloaded, agreeing both ways', () => {
    // One fsync per new mapping is the point in production; 65,536 of them on a disk take tens of seconds, so this
    // test writes to memory-backed storage where there is one (the fsyncs still happen, they are just cheap).
    const base = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/fakeip-') : dir;
    const dbFile = join(base, 'big.db');
    const N = 65536;
    const name = (i: number) => `host-${i}.zone-${i % 251}.example`;
    try {
      let pool = FakeIpPool.open({ dbFile, cidr: '100.64.0.0/15' });
      const addrs: string[] = [];
      for (let i = 0; i < N; i++) addrs.push(pool.assign(name(i)));
      assert.equal(new Set(addrs).size, N, 'every name has its own address');
      pool.close();
      pool = FakeIpPool.open({ dbFile, cidr: '100.64.0.0/15' });
      try {
        assert.equal(pool.stats().size, N);
        for (let i = 0; i < N; i++) {
          assert.equal(pool.lookup(addrs[i])?.name, name(i));
          assert.equal(pool.assign(name(i)), addrs[i]);
        }
        assert.equal(pool.stats().size, N, 'reassigning known names allocates nothing');
      } finally {
        pool.close();
      }
    } finally {
      if (base !== dir) rmSync(base, { recursive: true, force: true });
    }
  });

  it('has every mapping on disk when assign returns: a killed process loses only recency', () => {
    const dbFile = dbPath();
    const script = `
      const { FakeIpPool } = await import(${JSON.stringify(new URL('./fakeip.ts', import.meta.url).href)});
      const pool = FakeIpPool.open({ dbFile: ${JSON.stringify(dbFile)}, flushMs: 3600000 });
      const a = pool.assign('one.example');
      pool.flush();
      const start = Date.now();
      while (Date.now() === start) await new Promise((r) => setTimeout(r, 1));
      const touched = Date.now();
      pool.assign('one.example');
      const b = pool.assign('two.example');
      process.stdout.write(JSON.stringify({ a, b, touched }), () => process.kill(process.pid, 'SIGKILL'));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    const { a, b, touched } = JSON.parse(child.stdout) as { a: string; b: string; touched: number };
    const db = new Database(dbFile);
    const row = db.prepare('SELECT last_used FROM fakeip WHERE name = ?').get('one.example') as { last_used: number };
    db.close();
    assert.ok(row.last_used < touched, 'the use after the last flush was lost');
    const pool = FakeIpPool.open({ dbFile });
    try {
      assert.equal(pool.lookup(b)?.name, 'two.example', 'assigned just before the kill');
      assert.equal(pool.lookup(a)?.name, 'one.example');
      assert.equal(pool.assign('two.example'), b);
      assert.equal(pool.assign('three.example'), '198.18.0.4', 'no address handed out twice');
    } finally {
      pool.close();
    }
  });

  it('writes recency in batches: on flush, at close, and on its timer', async () => {
    const dbFile = dbPath();
    let pool = FakeIpPool.open({ dbFile, flushMs: 20 });
    const a = pool.assign('a.example');
    const assigned = pool.lookup(a)!.assigned_at;
    await nextMs();
    pool.assign('a.example');
    assert.equal(pool.stats().unflushed, 1);
    const until = Date.now() + 5000;
    while (pool.stats().unflushed > 0 && Date.now() < until) await sleep(5);
    assert.equal(pool.stats().unflushed, 0, 'the timer flushed');
    pool.close();
    const db = new Database(dbFile);
    try {
      const row = db.prepare('SELECT last_used FROM fakeip WHERE name = ?').get('a.example') as { last_used: number };
      assert.ok(row.last_used > assigned);
    } finally {
      db.close();
    }
    pool = FakeIpPool.open({ dbFile });
    pool.close();
    assert.throws(() => pool.assign('a.example'), /closed/);
  });

  it('recycles the least recently used mapping when full, and remembers recency across a restart', async () => {
    const dbFile = dbPath();
    let pool = FakeIpPool.open({ dbFile, cidr: '192.0.2.0/29' });
    const names = ['a.test', 'b.test', 'c.test', 'd.test', 'e.test'];
    const addrs: string[] = [];
    for (const n of names) {
      addrs.push(pool.assign(n));
      await nextMs();
    }
    assert.deepEqual(addrs, ['192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5', '192.0.2.6'], 'no network, gateway or broadcast');
    assert.equal(pool.stats().capacity, 5);
    pool.assign('a.test');
    await nextMs();
    assert.equal(pool.lookup(addrs[1])?.name, 'b.test', 'a map-back is a use too');
    await nextMs();

    // c.test is now the least recently used.
    assert.equal(pool.assign('f.test'), addrs[2]);
    assert.equal(pool.lookup(addrs[2])?.name, 'f.test');
    assert.equal(pool.stats().recycled, 1);
    pool.close();

    pool = FakeIpPool.open({ dbFile, cidr: '192.0.2.0/29' });
    try {
      assert.equal(pool.stats().size, 5);
      // d.test is the least recently used; c.test lost its address and gets d's.
      assert.equal(pool.assign('c.test'), addrs[3]);
      assert.equal(pool.lookup(addrs[3])?.name, 'c.test');
      assert.equal(pool.assign('g.test'), addrs[4], 'then e.test');
      assert.equal(pool.assign('a.test'), addrs[0], 'recently used names keep theirs');
      assert.equal(pool.assign('b.test'), addrs[1]);
      assert.equal(pool.stats().recycled, 2);
    } finally {
      pool.close();
    }
  });

  it('drops mappings that no longer fit when the pool shrinks', () => {
    const dbFile = dbPath();
    let pool = FakeIpPool.open({ dbFile, cidr: '198.18.0.0/24' });
    const addrs = Array.from({ length: 10 }, (_, i) => pool.assign(`n${i}.example`));
    pool.close();
    pool = FakeIpPool.open({ dbFile, cidr: '198.18.0.0/29' });
    try {
      assert.deepEqual(pool.stats(), { cidr: '198.18.0.0/29', size: 5, capacity: 5, recycled: 0, dropped: 5, unflushed: 0 });
      assert.equal(pool.assign('n0.example'), addrs[0]);
      assert.equal(pool.assign('n9.example'), addrs[1], 'n9 lost its address and takes the least recently used');
    } finally {
      pool.close();
    }
  });

  it('refuses bad input with clear errors', () => {
    const pool = FakeIpPool.open({ dbFile: ':memory:', cidr: '198.18.0.0/16' });
    try {
      assert.throws(() => pool.assign('not a name'), (e: Error) => e instanceof FakeIpError && /"not a name" is not a domain name/.test(e.message));
      assert.throws(() => pool.assign('a..b'), /is not a domain name/);
      assert.throws(() => pool.assign(`${'x'.repeat(64)}.example`), /label longer than 63/);
      assert.throws(() => pool.assign('.'), /the root name has no address/);
      assert.throws(() => pool.lookup('10.0.0.1'), /10\.0\.0\.1 is outside the pool 198\.18\.0\.0\/16/);
      assert.throws(() => pool.lookup('198.19.0.2'), /outside the pool/);
      assert.throws(() => pool.lookup('example.com'), /"example.com" is not an IPv4 address/);
      assert.throws(() => pool.lookup('2001:db8::1'), /not an IPv4 address/);
      assert.equal(pool.contains('198.18.255.255'), true);
      assert.equal(pool.contains('198.19.0.1'), false);
      assert.equal(pool.contains('garbage'), false);
      assert.equal(pool.stats().size, 0);
    } finally {
      pool.close();
    }
    const cidr = (c: string) => () => FakeIpPool.open({ dbFile: ':memory:', cidr: c });
    assert.throws(cidr('198.18.0.0'), /"198.18.0.0" is not an IPv4 CIDR/);
    assert.throws(cidr('198.18.0.1/15'), /has host bits set; the network is 198.18.0.0\/15/);
    assert.throws(cidr('198.18.0.0/31'), /prefix \/31 is outside \/12 to \/30/);
    assert.throws(cidr('10.0.0.0/8'), /prefix \/8 is outside/);
    assert.throws(cidr('fd00::/64'), /"fd00::" is not an IPv4 address \(the pool is IPv4 only/);
    assert.throws(cidr('300.0.0.0/16'), /"300.0.0.0" is not an IPv4 address/);
    assert.throws(cidr('127.0.0.0/16'), /overlaps 127.0.0.0\/8 \(loopback\)/);
    assert.throws(cidr('224.0.0.0/16'), /multicast/);
    assert.throws(() => FakeIpPool.open({ dbFile: ':memory:', ttl: -1 }), /ttl: must be a whole number of seconds from 0 to 3600/);
    assert.throws(() => FakeIpPool.open({ dbFile: ':memory:', filter: ['ok.example', 'a*.example'] }), /"a\*.example": "\*" stands for a whole label/);
    assert.deepEqual(parsePoolCidr('198.18.0.0/15'), { base: 0xc6120000, bits: 15 });
  });

  it('refuses a file that is damaged, foreign, or already open, and leaves it as it was', () => {
    const junk = dbPath();
    writeFileSync(junk, 'this is not a database\n'.repeat(200));
    assert.throws(() => FakeIpPool.open({ dbFile: junk }), (e: Error) => e instanceof FakeIpError && e.message === `fake-ip database ${junk} is not a SQLite database, or is damaged; move it aside and a new, empty pool is started`);
    assert.equal(readFileSync(junk, 'utf8'), 'this is not a database\n'.repeat(200));

    const foreign = dbPath();
    const other = new Database(foreign);
    other.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES (\'x\')');
    other.close();
    assert.throws(() => FakeIpPool.open({ dbFile: foreign }), /is not a cyfs-ns fake-ip pool: it holds other tables \(users\); give the pool a file of its own/);
    const check = new Database(foreign, { readonly: true });
    assert.equal(check.pragma('journal_mode', { simple: true }), 'delete', 'not switched to WAL');
    check.close();

    const tagged = dbPath();
    const app = new Database(tagged);
    app.pragma('application_id = 1234');
    app.close();
    assert.throws(() => FakeIpPool.open({ dbFile: tagged }), /its application id is 0x4d2/);

    const shared = dbPath();
    const pool = FakeIpPool.open({ dbFile: shared });
    try {
      assert.throws(() => FakeIpPool.open({ dbFile: shared }), /is in use by another fake-ip pool/);
      assert.equal(pool.assign('still.works'), '198.18.0.2');
    } finally {
      pool.close();
    }
    assert.throws(() => FakeIpPool.open({ dbFile: dir }), /fake-ip database .* cannot be opened/);
  });
});

describe('FakeIpFilter', () => {
  const filterOf = (...patterns: string[]) => {
    const f = new FakeIpFilter();
    for (const p of patterns) assert.equal(f.add(p), undefined, p);
    return f;
  };
  const cases: [string, string[], string[]][] = [
    ['example.com', ['example.com'], ['a.example.com', 'xexample.com', 'com']],
    ['*.example.com', ['a.example.com', 'www.example.com'], ['example.com', 'a.b.example.com', 'a.example.org']],
    ['+.example.com', ['example.com', 'a.example.com', 'a.b.c.example.com'], ['xexample.com', 'example.org']],
    ['.example.com', ['a.example.com', 'a.b.example.com'], ['example.com']],
    ['time.*.com', ['time.apple.com', 'time.windows.com'], ['time.a.b.com', 'time.com', 'ntp.apple.com']],
    ['*.*.xboxlive.com', ['a.b.xboxlive.com'], ['a.xboxlive.com', 'a.b.c.xboxlive.com']],
    ['stun.*.*', ['stun.l.google'], ['stun.l.google.com', 'stun.x']],
    ['*', ['localhost', 'router'], ['a.b']],
    ['+', ['a', 'a.b.c'], []],
    ['*.LAN.', ['nas.lan'], ['lan', 'a.b.lan']],
  ];
  for (const [pattern, yes, no] of cases) {
    it(`${pattern} matches as Clash matches it`, () => {
      const f = filterOf(pattern);
      for (const n of yes) assert.equal(f.matches(n), true, `${pattern} should match ${n}`);
      for (const n of no) assert.equal(f.matches(n), false, `${pattern} should not match ${n}`);
    });
  }

  it('combines patterns, backtracking from a literal label to a wildcard', () => {
    const f = filterOf('a.b.example.com', '*.c.example.com', 'x.*.example.com');
    assert.equal(f.matches('x.b.example.com'), true, 'b is a literal path that fails, * then matches');
    assert.equal(f.matches('q.c.example.com'), true);
    assert.equal(f.matches('q.b.example.com'), false);
    assert.equal(f.size, 3);
  });

  it('is what the pool consults', () => {
    const pool = FakeIpPool.open({ dbFile: ':memory:', filter: ['+.apple.com', '*.lan'] });
    try {
      assert.equal(pool.filtered('Time.Apple.COM.'), true);
      assert.equal(pool.filtered('nas.lan'), true);
      assert.equal(pool.filtered('example.com'), false);
      pool.setFilter(filterOf('example.com'));
      assert.equal(pool.filtered('example.com'), true);
      assert.equal(pool.filtered('nas.lan'), false);
    } finally {
      pool.close();
    }
  });

  it('rejects malformed patterns, saying why', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['a*.example.com', /"\*" stands for a whole label/],
      ['a.+.example.com', /"\+" may only be the first label/],
      ['+example.com', /"\+" may only be the first label/],
      ['+.', /nothing after its prefix/],
      ['.', /nothing after its prefix/],
      ['a..example.com', /empty label/],
      ['exa mple.com', /is not a domain pattern/],
      ['-a.example.com', /is not a domain pattern/],
      [`${'x'.repeat(64)}.com`, /label longer than 63/],
      ['geosite:cn', /geosite, geoip and rule-set references are not supported/],
      ['rule-set:private', /not supported/],
    ];
    for (const [p, why] of bad) assert.match(filterPatternProblem(p) ?? 'accepted', why, JSON.stringify(p));
  });

  it('reads pattern files, reporting each line left out with its number', () => {
    const file = join(dir, 'filter.txt');
    writeFileSync(file, '# fake-ip filter\n+.apple.com\n\n*.lan   # home\nbad*.example\nntp.*.com\n');
    const { filter, problems } = loadFakeIpFilter(['time.windows.com'], [file]);
    assert.deepEqual(problems, [`${file}:5: "bad*.example": "*" stands for a whole label (*.example.com, a.*.example.com)`]);
    assert.equal(filter.size, 4);
    for (const n of ['time.windows.com', 'www.apple.com', 'nas.lan', 'ntp.ubuntu.com']) assert.equal(filter.matches(n), true, n);
    assert.throws(() => loadFakeIpFilter([], [join(dir, 'missing.txt')]), /fake-ip filter file .*missing.txt: cannot read/);
  });
});
