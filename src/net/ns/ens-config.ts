// The `trusted_names.ens` section of the cyfs-ns configuration: where the Ethereum JSON-RPC endpoint is, which chain
// and registry to trust, and which names ENS answers for. Checked at load so a typo in an address or a URL is a
// configuration error with its line, not a SERVFAIL for every .eth name later.
import type { Reader, YamlNode } from './config-reader.ts';
import { checksumAddress, type EnsConfig } from './ens.ts';
import { domainProblem } from './records.ts';
import { normalizeName } from './wire.ts';

export { createEnsResolver, type EnsConfig } from './ens.ts';

/** Each text key is one more eth_call per uncached TXT answer. */
const MAX_TEXT_KEYS = 32;

/**
 * Parses the section at `node` (key path `path`, such as "trusted_names.ens"); every problem goes to `r`, and the
 * result is undefined when there was one. `_abs` is every section parser's path resolver; ENS has no file to resolve.
 */
export function parseEnsConfig(r: Reader, node: YamlNode | null, path: string, _abs: (p: string) => string): EnsConfig | undefined {
  const before = r.problems.length;
  const m = r.map(node, path, ['rpc_url', 'chain_id', 'registry', 'suffixes', 'confirmations', 'timeout_ms', 'cache_ttl', 'text_keys']);
  if (!m) return undefined;
  const key = (k: string) => `${path}.${k}`;
  const c: EnsConfig = {
    rpc_url: '',
    chain_id: 1,
    // The registry is deployed at this address on mainnet and on the public test networks alike.
    registry: '0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e',
    suffixes: ['eth'],
    confirmations: 0,
    timeout_ms: 3000,
    cache_ttl: 300,
    text_keys: [],
  };
  const set = <T>(v: T | undefined, apply: (v: T) => void) => {
    if (v !== undefined) apply(v);
  };

  if (!m.has('rpc_url')) r.err(node, key('rpc_url'), 'is required (the Ethereum JSON-RPC endpoint, http:// or https://)');
  set(m.has('rpc_url') ? r.str(m.get('rpc_url'), key('rpc_url')) : undefined, (v) => {
    // The URL itself stays out of the messages: hosted endpoints carry their API key in it.
    let url: URL | undefined;
    try {
      url = new URL(v);
    } catch {
      r.err(m.get('rpc_url'), key('rpc_url'), 'is not a URL');
    }
    if (url && url.protocol !== 'http:' && url.protocol !== 'https:') r.err(m.get('rpc_url'), key('rpc_url'), `must be http:// or https://, not ${url.protocol}//`);
    c.rpc_url = v;
  });
  if (m.has('chain_id')) set(r.int(m.get('chain_id'), key('chain_id'), 1, Number.MAX_SAFE_INTEGER), (v) => (c.chain_id = v));
  if (m.has('registry')) {
    set(r.str(m.get('registry'), key('registry')), (v) => {
      const at = m.get('registry');
      if (!/^0x[0-9a-fA-F]{40}$/.test(v)) r.err(at, key('registry'), `"${v}" is not an address (0x and 40 hex digits)`);
      // Mixed case carries an EIP-55 checksum, and wallets check it: a mistyped digit is caught here too.
      else if (v.slice(2) !== v.slice(2).toLowerCase() && v.slice(2) !== v.slice(2).toUpperCase() && checksumAddress(v) !== v) {
        r.err(at, key('registry'), `"${v}" fails its EIP-55 checksum (a mistyped digit?); these digits checksum as ${checksumAddress(v)}`);
      } else c.registry = checksumAddress(v);
    });
  }
  if (m.has('suffixes')) {
    const at = m.get('suffixes');
    const list = r.strList(at, key('suffixes'));
    const seen = new Set<string>();
    list.forEach((s, i) => {
      const problem = domainProblem(s, false);
      if (problem) r.err(at, key(`suffixes[${i}]`), problem);
      else if (seen.has(normalizeName(s))) r.err(at, key(`suffixes[${i}]`), `"${s}" is listed twice`);
      seen.add(normalizeName(s));
    });
    if (list.length === 0) r.err(at, key('suffixes'), 'must list at least one name');
    c.suffixes = [...seen];
  }
  if (m.has('confirmations')) set(r.int(m.get('confirmations'), key('confirmations'), 0, 10000), (v) => (c.confirmations = v));
  if (m.has('timeout_ms')) set(r.int(m.get('timeout_ms'), key('timeout_ms'), 50, 60000), (v) => (c.timeout_ms = v));
  if (m.has('cache_ttl')) set(r.int(m.get('cache_ttl'), key('cache_ttl'), 0, 86400), (v) => (c.cache_ttl = v));
  if (m.has('text_keys')) {
    const at = m.get('text_keys');
    const keys = r.strList(at, key('text_keys'));
    keys.forEach((k, i) => {
      // "<key>=<value>" is read up to the first "="; a key holding one, or a space, would be misread.
      if (!/^[\x21-\x3c\x3e-\x7e]+$/.test(k)) r.err(at, key(`text_keys[${i}]`), `"${k}" must be printable ASCII without spaces or "="`);
    });
    if (new Set(keys).size !== keys.length) r.err(at, key('text_keys'), 'lists a key twice');
    if (keys.length > MAX_TEXT_KEYS) r.err(at, key('text_keys'), `lists ${keys.length} keys; at most ${MAX_TEXT_KEYS}`);
    c.text_keys = keys;
  }
  return r.problems.length === before ? c : undefined;
}
