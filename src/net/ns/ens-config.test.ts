// The trusted_names.ens configuration section: defaults, a full example, and every kind of mistake with its line.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LineCounter, isMap, parseDocument } from 'yaml';
import { Reader, type YamlNode } from './config-reader.ts';
import { createEnsResolver, parseEnsConfig } from './ens-config.ts';

function parse(yaml: string): { config: ReturnType<typeof parseEnsConfig>; problems: string[] } {
  const lines = new LineCounter();
  const doc = parseDocument(yaml, { lineCounter: lines });
  assert.ok(isMap(doc.contents));
  const r = new Reader('ns.yaml', lines);
  const config = parseEnsConfig(r, (doc.contents.get('ens', true) as YamlNode | undefined) ?? null, 'trusted_names.ens', (p) => `/etc/cyfs-ns/${p}`);
  return { config, problems: r.problems };
}

describe('parseEnsConfig', () => {
  it('fills in every key but rpc_url from the defaults (mainnet)', () => {
    const { config, problems } = parse('ens:\n  rpc_url: http://127.0.0.1:8545\n');
    assert.deepEqual(problems, []);
    assert.deepEqual(config, {
      rpc_url: 'http://127.0.0.1:8545', chain_id: 1, registry: '0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e', suffixes: ['eth'], confirmations: 0,
      timeout_ms: 3000, cache_ttl: 300, text_keys: [],
    });
  });

  it('reads a full section, normalising suffixes and the registry address', () => {
    const { config, problems } = parse(`
ens:
  rpc_url: https://user:secret@eth.example/v3/key
  chain_id: 11155111
  registry: "0x00000000000c2e074ec69a0dfb2997ba6c7d2e1e"
  suffixes: [eth, Box.]
  confirmations: 2
  timeout_ms: 5000
  cache_ttl: 60
  text_keys: [url, email, com.github]
`);
    assert.deepEqual(problems, []);
    assert.deepEqual(config, {
      rpc_url: 'https://user:secret@eth.example/v3/key', chain_id: 11155111, registry: '0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e', suffixes: ['eth', 'box'],
      confirmations: 2, timeout_ms: 5000, cache_ttl: 60, text_keys: ['url', 'email', 'com.github'],
    });
    assert.deepEqual(createEnsResolver(config!).suffixes, ['eth', 'box']);
  });

  it('reports every mistake with its line and key path, and keeps URLs out of the messages', () => {
    const { config, problems } = parse(`
ens:
  rpc_url: ws://user:secret@eth.example/key
  chain_id: 0
  registry: "0x00000000000C2E074eC69A0dFb2997BA6C7d2e1E"
  suffixes: [eth, "bad name", ETH]
  confirmations: -1
  timeout_ms: 10
  cache_ttl: 1.5
  text_keys: [url, "a=b", url, "two words"]
  resolver: 0x1
`);
    assert.equal(config, undefined);
    assert.deepEqual(problems, [
      'ns.yaml:3: trusted_names.ens.rpc_url: must be http:// or https://, not ws://',
      'ns.yaml:4: trusted_names.ens.chain_id: must be a whole number from 1 to 9007199254740991',
      'ns.yaml:5: trusted_names.ens.registry: "0x00000000000C2E074eC69A0dFb2997BA6C7d2e1E" fails its EIP-55 checksum (a mistyped digit?); these digits checksum as 0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e',
      'ns.yaml:6: trusted_names.ens.suffixes[1]: "bad name" is not a domain name (letters, digits, "-", "_" and dots)',
      'ns.yaml:6: trusted_names.ens.suffixes[2]: "ETH" is listed twice',
      'ns.yaml:7: trusted_names.ens.confirmations: must be a whole number from 0 to 10000',
      'ns.yaml:8: trusted_names.ens.timeout_ms: must be a whole number from 50 to 60000',
      'ns.yaml:9: trusted_names.ens.cache_ttl: must be a whole number from 0 to 86400',
      'ns.yaml:10: trusted_names.ens.text_keys[1]: "a=b" must be printable ASCII without spaces or "="',
      'ns.yaml:10: trusted_names.ens.text_keys[3]: "two words" must be printable ASCII without spaces or "="',
      'ns.yaml:10: trusted_names.ens.text_keys: lists a key twice',
      'ns.yaml:11: trusted_names.ens.resolver: unknown key (known here: rpc_url, chain_id, registry, suffixes, confirmations, timeout_ms, cache_ttl, text_keys)',
    ]);
    assert.ok(problems.every((p) => !p.includes('secret')));
  });

  it('requires rpc_url, and refuses an address YAML read as a number, non-addresses, and empty lists', () => {
    const { config, problems } = parse(`
ens:
  registry: 0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e
  suffixes: []
  text_keys: [${Array.from({ length: 33 }, (_, i) => `k${i}`).join(', ')}]
`);
    assert.equal(config, undefined);
    assert.deepEqual(problems, [
      'ns.yaml:3: trusted_names.ens.rpc_url: is required (the Ethereum JSON-RPC endpoint, http:// or https://)',
      'ns.yaml:3: trusted_names.ens.registry: must be text (quote it)',
      'ns.yaml:4: trusted_names.ens.suffixes: must list at least one name',
      'ns.yaml:5: trusted_names.ens.text_keys: lists 33 keys; at most 32',
    ]);
    assert.deepEqual(parse('ens:\n  rpc_url: "not a url"\n  registry: "0x1234"\n').problems, [
      'ns.yaml:2: trusted_names.ens.rpc_url: is not a URL',
      'ns.yaml:3: trusted_names.ens.registry: "0x1234" is not an address (0x and 40 hex digits)',
    ]);
    assert.deepEqual(parse('ens: [a]\n').problems, ['ns.yaml:1: trusted_names.ens: must be a mapping of keys to values']);
  });
});
