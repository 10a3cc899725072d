// Block lists in each format, exceptions and allow overrides, and per-client policies.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Blocking, RuleSet, blocks, type Policy } from './blocking.ts';
import { defaultConfig } from './config.ts';
import { hashName } from './wire.ts';

function decide(policy: Policy, name: string): boolean {
  const labels = name.split('.');
  const suffixes = labels.map((_, i) => hashName(labels.slice(i).join('.')));
  return blocks(policy, suffixes, (i) => labels.slice(i).join('.'));
}

const LIST = `! Title: test list
[Adblock Plus 2.0]
# hosts section
0.0.0.0 ads.example
127.0.0.1 tracker.example other.example
127.0.0.1 localhost
0.0.0.0 0.0.0.0
||ads-network.example^
||cdn.example^|
@@||ok.ads-network.example^
*.wild.example
plain.example
10.0.0.1 redirect.example
example.com##.banner
||x.example^$third-party
/ads[0-9]+\\./
`;

describe('RuleSet', () => {
  it('reads hosts, domain, wildcard and AdGuard lines, and says which lines it could not use', () => {
    const set = RuleSet.parse(LIST, 'list.txt');
    assert.equal(set.skipped, 2);
    assert.deepEqual(set.problems, [
      'list.txt:13: "10.0.0.1" points names at an address; only 0.0.0.0, 127.0.0.1, :: and ::1 lines block',
      'list.txt:14: cosmetic (element hiding) rules do not apply to DNS',
      'list.txt:15: rule "||x.example^$third-party" has modifiers ($...), which apply to browsers, not DNS',
      'list.txt:16: regular-expression rules are not supported',
    ]);
    const policy: Policy = { name: 'p', sets: [set], answer: 'nxdomain', ttl: 60 };
    const cases: [string, boolean][] = [
      ['ads.example', true], // hosts: this name only
      ['sub.ads.example', false],
      ['tracker.example', true],
      ['other.example', true],
      ['localhost', false],
      ['ads-network.example', true], // ||domain^: the name and below
      ['a.b.ads-network.example', true],
      ['ok.ads-network.example', false], // @@ exception wins
      ['x.ok.ads-network.example', false],
      ['cdn.example', true],
      ['wild.example', false], // *.domain: below only
      ['a.wild.example', true],
      ['plain.example', true],
      ['www.plain.example', false],
      ['redirect.example', false],
      ['unrelated.example', false],
    ];
    for (const [name, blocked] of cases) assert.equal(decide(policy, name), blocked, name);
  });
});

describe('Blocking', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ns-block-'));
    writeFileSync(join(dir, 'ads.txt'), '||ads.example^\n||shared.example^\n');
    writeFileSync(join(dir, 'adult.txt'), '||adult.example^\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function config() {
    const b = defaultConfig().blocking;
    b.lists = [{ name: 'ads', file: join(dir, 'ads.txt') }, { name: 'adult', file: join(dir, 'adult.txt') }];
    b.allow = ['shared.example'];
    b.deny = ['malware.example'];
    b.policies = [
      { name: 'kids', lists: ['ads', 'adult'], allow: [], deny: ['games.example'], answer: 'zero_ip' },
      { name: 'open', lists: [], allow: ['malware.example'], deny: [], answer: 'nxdomain' },
    ];
    b.clients = [{ cidr: '192.168.1.0/24', policy: 'kids' }, { cidr: '192.168.1.99', policy: 'open' }];
    return b;
  }

  it('applies each client its policy: longest prefix first, then the default', () => {
    const b = new Blocking(config());
    assert.equal(b.policyFor('192.168.1.5').name, 'kids');
    assert.equal(b.policyFor('192.168.1.99').name, 'open');
    assert.equal(b.policyFor('10.0.0.1').name, 'default');
    const kids = b.policyFor('192.168.1.5');
    const dflt = b.policyFor('10.0.0.1');
    const open = b.policyFor('192.168.1.99');
    assert.equal(kids.answer, 'zero_ip');
    assert.equal(decide(kids, 'adult.example'), true);
    assert.equal(decide(dflt, 'adult.example'), true, 'the default policy uses every list');
    assert.equal(decide(kids, 'games.example'), true);
    assert.equal(decide(dflt, 'games.example'), false);
    assert.equal(decide(kids, 'shared.example'), false, 'a global allow beats a list');
    assert.equal(decide(dflt, 'malware.example'), true, 'a global deny applies to every policy');
    assert.equal(decide(open, 'malware.example'), false, "a policy's allow beats the global deny");
    assert.equal(decide(open, 'ads.example'), false);
    assert.equal(b.active, true);
  });

  it('is inactive with no rules at all, so queries skip it', () => {
    assert.equal(new Blocking(defaultConfig().blocking).active, false);
  });

  it('throws naming the list when its file cannot be read', () => {
    const c = config();
    c.lists[1].file = join(dir, 'gone.txt');
    assert.throws(() => new Blocking(c), /block list "adult" \(.*gone\.txt\): ENOENT/);
  });
});
