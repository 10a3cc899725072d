// ENS names as DNS answers (DESIGN §8 trusted names): cyfs-ns reads the ENS registry and the name's resolver contract
// itself, through an Ethereum JSON-RPC endpoint the user configures, instead of trusting an upstream's copy of the
// data (eth.limo-style gateways). The endpoint is the root of trust: it is checked to serve the configured chain, and
// reads can be made some blocks behind the head so a short reorganisation does not change an answer already given.
//
// The contracts are read with a hand-written ABI codec for the few fixed signatures ENS needs; a general Ethereum
// library would be most of the code cyfs-ns loads for a feature most installations leave off.
import { domainToUnicode } from 'node:url';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { TrustedNameError, type TrustedAnswer, type TrustedNameResolver } from './trusted.ts';
import { CLASS_IN, RCODE, TYPE, WireError, decodeMessage, nameLabels, typeName, type ResourceRecord } from './wire.ts';

/** The `trusted_names.ens` section, validated (ens-config.ts). */
export interface EnsConfig {
  /** http(s) URL of the JSON-RPC endpoint; may carry user:password (sent as HTTP basic authentication). */
  rpc_url: string;
  chain_id: number;
  /** The ENS registry's address, 0x and 40 hex digits. */
  registry: string;
  /** Lower case, no trailing dot. */
  suffixes: string[];
  /** How many blocks behind the head reads are made. */
  confirmations: number;
  timeout_ms: number;
  /** TTL of every answer, positive or negative, in seconds. */
  cache_ttl: number;
  /** ENS text records published in synthesised TXT answers, as `<key>=<value>`. */
  text_keys: string[];
}

// ---- hashing -----------------------------------------------------------------------------------------------------

export function keccak256(data: Uint8Array): Buffer {
  return Buffer.from(keccak_256(data));
}

/** The first four bytes of the hash of a function signature such as "addr(bytes32)". */
export function selector(signature: string): Buffer {
  return keccak256(Buffer.from(signature, 'latin1')).subarray(0, 4);
}

/**
 * A DNS name's labels as ENS hashes them, or undefined when the name cannot be an ENS name. DNS carries
 * internationalised labels in their ASCII (punycode) form, while ENS hashes the Unicode form, so `xn--` labels are
 * decoded; ENS normalisation forbids "--" in the third and fourth place, so an `xn--` label never names itself.
 */
export function ensLabels(name: string): Buffer[] | undefined {
  const out: Buffer[] = [];
  for (const label of nameLabels(name)) {
    const text = label.toString('latin1').toLowerCase();
    if (!text.startsWith('xn--')) {
      out.push(label);
      continue;
    }
    const unicode = domainToUnicode(text);
    if (unicode === '' || unicode.startsWith('xn--') || unicode.includes('.')) return undefined;
    out.push(Buffer.from(unicode, 'utf8'));
  }
  return out;
}

function namehashOf(labels: readonly Uint8Array[]): Buffer {
  let node: Buffer = Buffer.alloc(32);
  for (let i = labels.length - 1; i >= 0; i--) node = keccak256(Buffer.concat([node, keccak256(labels[i])]));
  return node;
}

/** EIP-137 namehash; throws WireError on a name DNS could not carry, or one that cannot be an ENS name. */
export function namehash(name: string): Buffer {
  const labels = ensLabels(name);
  if (!labels) throw new WireError(`"${name}" is not a valid internationalised name`);
  return namehashOf(labels);
}

/** A name in DNS wire format (uncompressed), as EIP-1185 resolvers key their records by its hash. */
export function dnsWireName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of nameLabels(name)) parts.push(Buffer.from([l.length]), l);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** EIP-55 mixed-case form of an address given as 40 hex digits, with or without 0x. */
export function checksumAddress(address: string): string {
  const hex = address.replace(/^0x/i, '').toLowerCase();
  if (!/^[0-9a-f]{40}$/.test(hex)) throw new Error(`"${address}" is not an address (0x and 40 hex digits)`);
  const hash = keccak256(Buffer.from(hex, 'latin1'));
  let out = '0x';
  for (let i = 0; i < 40; i++) {
    const nibble = (hash[i >> 1] >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    out += nibble >= 8 ? hex[i].toUpperCase() : hex[i];
  }
  return out;
}

// ---- ABI codec ---------------------------------------------------------------------------------------------------

export type AbiType = 'address' | 'bool' | 'bytes' | 'bytes4' | 'bytes32' | 'string' | 'uint16' | 'uint64' | 'uint256';
export type AbiValue = string | Uint8Array | bigint | number | boolean;

export class AbiError extends Error {}

const WORD = 32;

function uintWord(v: bigint, bits: number): Buffer {
  if (v < 0n || v >= 1n << BigInt(bits)) throw new AbiError(`${v} does not fit in uint${bits}`);
  return Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
}

function hexBytes(v: AbiValue, what: string): Buffer {
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (typeof v === 'string' && /^0x([0-9a-fA-F]{2})*$/.test(v)) return Buffer.from(v.slice(2), 'hex');
  throw new AbiError(`${what} must be bytes or 0x-prefixed hex`);
}

function padded(b: Buffer): Buffer {
  const rest = b.length % WORD;
  return rest === 0 ? b : Buffer.concat([b, Buffer.alloc(WORD - rest)]);
}

function staticWord(type: AbiType, v: AbiValue): Buffer {
  switch (type) {
    case 'address': {
      const b = hexBytes(v, 'address');
      if (b.length !== 20) throw new AbiError('address must be 20 bytes');
      return Buffer.concat([Buffer.alloc(12), b]);
    }
    case 'bool':
      if (typeof v !== 'boolean') throw new AbiError('bool must be true or false');
      return uintWord(v ? 1n : 0n, 8);
    case 'bytes4':
    case 'bytes32': {
      const b = hexBytes(v, type);
      if (b.length !== (type === 'bytes4' ? 4 : 32)) throw new AbiError(`${type} must be ${type === 'bytes4' ? 4 : 32} bytes`);
      return padded(b);
    }
    case 'uint16':
    case 'uint64':
    case 'uint256':
      if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isSafeInteger(v))) throw new AbiError(`${type} must be an integer`);
      return uintWord(BigInt(v), Number(type.slice(4)));
    default:
      throw new AbiError(`${type} is not a type this codec writes`);
  }
}

/** Head/tail encoding of a flat argument list (no arrays or tuples: ENS's calls need none). */
export function abiEncode(types: readonly AbiType[], values: readonly AbiValue[]): Buffer {
  if (types.length !== values.length) throw new AbiError(`${types.length} types but ${values.length} values`);
  const heads: Buffer[] = [];
  const tails: Buffer[] = [];
  let tailAt = types.length * WORD;
  types.forEach((type, i) => {
    const v = values[i];
    if (type !== 'bytes' && type !== 'string') {
      heads.push(staticWord(type, v));
      return;
    }
    let data: Buffer;
    if (type === 'string') {
      if (typeof v !== 'string') throw new AbiError('string must be text');
      data = Buffer.from(v, 'utf8');
    } else data = hexBytes(v, 'bytes');
    const tail = Buffer.concat([uintWord(BigInt(data.length), 256), padded(data)]);
    heads.push(uintWord(BigInt(tailAt), 256));
    tails.push(tail);
    tailAt += tail.length;
  });
  return Buffer.concat([...heads, ...tails]);
}

/** Call data as eth_call and eth_sendTransaction take it: selector and arguments, 0x-prefixed hex. */
export function encodeCall(signature: string, values: readonly AbiValue[]): string {
  const inside = /^[A-Za-z_][A-Za-z0-9_]*\(([^()]*)\)$/.exec(signature);
  if (!inside) throw new AbiError(`"${signature}" is not a function signature`);
  const types = (inside[1] === '' ? [] : inside[1].split(',')) as AbiType[];
  return `0x${Buffer.concat([selector(signature), abiEncode(types, values)]).toString('hex')}`;
}

function word(data: Buffer, at: number, what: string): Buffer {
  if (data.length === 0) throw new AbiError(`${what}: the call returned no data (no contract at that address?)`);
  if (at + WORD > data.length) throw new AbiError(`${what}: the result is ${data.length} bytes, too short`);
  return data.subarray(at, at + WORD);
}

function smallUint(w: Buffer, what: string): number {
  const v = BigInt(`0x${w.toString('hex')}`);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new AbiError(`${what}: ${v} is out of range`);
  return Number(v);
}

/** A returned address, lower-case 0x hex (the zero address when unset). */
export function decodeAddress(data: Buffer, what: string): string {
  const w = word(data, 0, what);
  if (w.subarray(0, 12).some((b) => b !== 0)) throw new AbiError(`${what}: not an address (the upper 12 bytes are not zero)`);
  return `0x${w.subarray(12).toString('hex')}`;
}

export function decodeBool(data: Buffer, what: string): boolean {
  const v = smallUint(word(data, 0, what), what);
  if (v > 1) throw new AbiError(`${what}: ${v} is not a bool`);
  return v === 1;
}

/** A returned `bytes` (the first return value). */
export function decodeBytes(data: Buffer, what: string): Buffer {
  const offset = smallUint(word(data, 0, what), what);
  if (offset % WORD !== 0) throw new AbiError(`${what}: misaligned offset ${offset}`);
  const length = smallUint(word(data, offset, what), what);
  const start = offset + WORD;
  if (start + length > data.length) throw new AbiError(`${what}: ${length} bytes of data run past the ${data.length}-byte result`);
  return data.subarray(start, start + length);
}

export function decodeString(data: Buffer, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(decodeBytes(data, what));
  } catch (err) {
    if (err instanceof AbiError) throw err;
    throw new AbiError(`${what}: the text is not UTF-8`);
  }
}

// ---- EIP-1185 DNS records ----------------------------------------------------------------------------------------

/** End of an uncompressed name at `off` (not past `end`), or -1. Records are stored as cut-outs of the bytes their
 * owner sent, so a compression pointer in them points nowhere meaningful. */
function plainNameEnd(buf: Buffer, off: number, end: number): number {
  let p = off;
  for (let total = 0; p < end; ) {
    const l = buf[p];
    if (l === 0) return p + 1;
    if (l > 63) return -1;
    total += l + 1;
    if (total >= 255) return -1;
    p += l + 1;
  }
  return -1;
}

/** Offsets of the names inside the RDATA of types that have them. */
const RDATA_NAMES: Record<number, (rd: number) => number[]> = {
  [TYPE.NS]: (rd) => [rd],
  [TYPE.CNAME]: (rd) => [rd],
  [TYPE.PTR]: (rd) => [rd],
  [TYPE.MX]: (rd) => [rd + 2],
  [TYPE.SRV]: (rd) => [rd + 6],
};

/** Concatenated wire-format resource records (what `dnsRecord` returns) as records; throws WireError when malformed. */
export function decodeRecords(data: Uint8Array): ResourceRecord[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let count = 0;
  for (let p = 0; p < buf.length; count++) {
    const owner = plainNameEnd(buf, p, buf.length);
    if (owner < 0) throw new WireError(`record ${count + 1} has a malformed or compressed owner name`);
    if (owner + 10 > buf.length) throw new WireError(`record ${count + 1} is cut short`);
    const type = buf.readUInt16BE(owner);
    const rd = owner + 10;
    const end = rd + buf.readUInt16BE(owner + 8);
    if (end > buf.length) throw new WireError(`record ${count + 1}'s data runs past the end`);
    const names = type === TYPE.SOA ? [rd, plainNameEnd(buf, rd, end)] : (RDATA_NAMES[type]?.(rd) ?? []);
    if (names.some((at) => at < 0 || plainNameEnd(buf, at, end) < 0)) throw new WireError(`record ${count + 1} has a malformed or compressed name in its data`);
    p = end;
  }
  if (count > 0xffff) throw new WireError(`${count} records are more than a message holds`);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(0x8000, 2);
  header.writeUInt16BE(count, 6);
  return decodeMessage(Buffer.concat([header, buf])).answers.map((rr) => ({ ...rr, ttl: rr.ttl > 0x7fffffff ? 0 : rr.ttl }));
}

// ---- EIP-1577 content hashes -------------------------------------------------------------------------------------

function varint(b: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = 0; i < 4 && at + i < b.length; i++) {
    value += (b[at + i] & 0x7f) * 2 ** (7 * i);
    if ((b[at + i] & 0x80) === 0) return { value, next: at + i + 1 };
  }
  return undefined;
}

/** The parts of a binary CIDv1 filling `b` exactly, or undefined. */
function parseCid(b: Uint8Array): { codec: number; hashCode: number; digest: Uint8Array } | undefined {
  const version = varint(b, 0);
  if (version?.value !== 1) return undefined;
  const codec = varint(b, version.next);
  const hashCode = codec && varint(b, codec.next);
  const length = hashCode && varint(b, hashCode.next);
  if (!codec || !hashCode || !length || length.next + length.value !== b.length) return undefined;
  return { codec: codec.value, hashCode: hashCode.value, digest: b.subarray(length.next) };
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32, lower case, unpadded: the multibase "b" IPFS writes CIDv1s in. */
function base32(b: Uint8Array): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const byte of b) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

const CONTENT = { IPFS: 0xe3, SWARM: 0xe4, IPNS: 0xe5, ONION: 0x1bc, ONION3: 0x1bd } as const;
const SWARM_MANIFEST = 0xfa;
const KECCAK_256 = 0x1b;

/** An EIP-1577 content hash in the form browsers and gateways take (`ipfs://<CID>`, `bzz://<hash>`, ...), or 0x hex
 * when its protocol is not one of those or its value does not parse. */
export function decodeContenthash(hash: Uint8Array): string {
  const raw = `0x${Buffer.from(hash).toString('hex')}`;
  const proto = varint(hash, 0);
  if (!proto) return raw;
  const value = hash.subarray(proto.next);
  switch (proto.value) {
    case CONTENT.IPFS:
    case CONTENT.IPNS:
      return parseCid(value) ? `${proto.value === CONTENT.IPFS ? 'ipfs' : 'ipns'}://b${base32(value)}` : raw;
    case CONTENT.SWARM: {
      const cid = parseCid(value);
      return cid?.codec === SWARM_MANIFEST && cid.hashCode === KECCAK_256 && cid.digest.length === 32 ? `bzz://${Buffer.from(cid.digest).toString('hex')}` : raw;
    }
    case CONTENT.ONION:
    case CONTENT.ONION3: {
      const text = Buffer.from(value).toString('latin1');
      const length = proto.value === CONTENT.ONION ? 16 : 56;
      return text.length === length && /^[a-z2-7]+$/.test(text) ? `${proto.value === CONTENT.ONION ? 'onion' : 'onion3'}://${text}` : raw;
    }
    default:
      return raw;
  }
}

// ---- JSON-RPC ----------------------------------------------------------------------------------------------------

/** The longest piece of a node's error message repeated in ours: enough to diagnose, not enough to flood a log. */
const MAX_REMOTE_TEXT = 200;

function remoteText(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, ' ');
  return clean.length > MAX_REMOTE_TEXT ? `${clean.slice(0, MAX_REMOTE_TEXT)}...` : clean;
}

/** JSON-RPC 2.0 over HTTP(S). Messages name the endpoint by scheme and host only: hosted endpoints carry their API
 * key in the path or the user-info, and these messages reach logs and the admin API. */
class JsonRpc {
  readonly where: string;
  private readonly url: string;
  private readonly headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  private nextId = 1;

  constructor(rpcUrl: string) {
    const u = new URL(rpcUrl);
    // fetch refuses URLs with credentials; they become the basic authentication they stand for.
    if (u.username || u.password) {
      const user = decodeURIComponent(u.username);
      const password = decodeURIComponent(u.password);
      this.headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      u.username = '';
      u.password = '';
    }
    this.url = u.href;
    this.where = `${u.protocol}//${u.host}`;
  }

  async call(method: string, params: unknown[], signal: AbortSignal): Promise<unknown> {
    const id = this.nextId++;
    let res: Response;
    try {
      res = await fetch(this.url, { method: 'POST', headers: this.headers, body: JSON.stringify({ jsonrpc: '2.0', id, method, params }), signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
      throw new Error(`the RPC endpoint ${this.where} cannot be reached (${remoteText(cause?.code ?? cause?.message ?? (err as Error).message)})`);
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`the RPC endpoint ${this.where} answered ${method} with HTTP ${res.status}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      if (signal.aborted) throw signal.reason;
      throw new Error(`the RPC endpoint ${this.where} answered ${method} with something other than JSON`);
    }
    const reply = body as { id?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } } | null;
    if (typeof reply !== 'object' || reply === null || Array.isArray(reply) || reply.id !== id) {
      throw new Error(`the RPC endpoint ${this.where} answered ${method} with something other than its JSON-RPC reply`);
    }
    if (reply.error !== undefined) {
      throw new Error(`${method} failed at ${this.where}: ${remoteText(reply.error?.message ?? reply.error)}${typeof reply.error?.code === 'number' ? ` (code ${reply.error.code})` : ''}`);
    }
    if (reply.result === undefined) throw new Error(`the RPC endpoint ${this.where} answered ${method} without a result`);
    return reply.result;
  }
}

function quantity(v: unknown, what: string): bigint {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{1,64}$/.test(v)) throw new Error(`${what}: ${remoteText(JSON.stringify(v) ?? String(v))} is not a hex quantity`);
  return BigInt(v);
}

function hexData(v: unknown, what: string): Buffer {
  if (typeof v !== 'string' || !/^0x([0-9a-fA-F]{2})*$/.test(v)) throw new Error(`${what}: the result is not hex data`);
  return Buffer.from(v.slice(2), 'hex');
}

// ---- the resolver ------------------------------------------------------------------------------------------------

const ZERO_ADDRESS = `0x${'0'.repeat(40)}`;

/** EIP-165 ids of the resolver profiles read here; each profile has one function, so its id is that selector. */
export const INTERFACE = {
  ADDR: selector('addr(bytes32)'),
  CONTENTHASH: selector('contenthash(bytes32)'),
  TEXT: selector('text(bytes32,string)'),
  DNS_RECORD: selector('dnsRecord(bytes32,bytes32,uint16)'),
} as const;

/** The most bytes one TXT character-string holds. */
const TXT_STRING_MAX = 255;

function txtRecord(name: string, text: string, ttl: number): ResourceRecord {
  const bytes = Buffer.from(text, 'utf8');
  const strings: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += TXT_STRING_MAX) strings.push(bytes.subarray(i, i + TXT_STRING_MAX));
  return { name, type: TYPE.TXT, cls: CLASS_IN, ttl, data: { kind: 'txt', strings } };
}

/** One eth_call at the resolution's block, its result decoded; `what` names it in errors. */
type Read = <T>(to: string, signature: string, values: AbiValue[], decode: (data: Buffer, what: string) => T, what: string) => Promise<T>;

export class EnsResolver implements TrustedNameResolver {
  readonly label = 'ens';
  readonly suffixes: readonly string[];
  readonly timeoutMs: number;
  readonly maxCacheTtl: number;
  private readonly rpc: JsonRpc;
  private readonly registry: string;
  /** Set once the endpoint has shown the configured chain id; any failure clears it, since an endpoint that fails may
   * have been repointed (a load balancer, a restarted node on another network). */
  private chainChecked = false;

  constructor(private readonly config: EnsConfig) {
    this.suffixes = config.suffixes;
    this.timeoutMs = config.timeout_ms;
    this.maxCacheTtl = config.cache_ttl;
    this.rpc = new JsonRpc(config.rpc_url);
    this.registry = config.registry.toLowerCase();
  }

  async resolve(name: string, qtype: number, signal: AbortSignal): Promise<TrustedAnswer> {
    try {
      return await this.lookup(name, qtype, signal);
    } catch (err) {
      this.chainChecked = false;
      if (err instanceof TrustedNameError) throw err;
      throw new TrustedNameError(`ens: ${name} ${typeName(qtype)}: ${(err as Error).message}`);
    }
  }

  private async lookup(name: string, qtype: number, signal: AbortSignal): Promise<TrustedAnswer> {
    const ttl = this.config.cache_ttl;
    const labels = ensLabels(name);
    if (!labels) return { rcode: RCODE.NXDOMAIN, answers: [], ttl };
    if (!this.chainChecked) {
      const id = quantity(await this.rpc.call('eth_chainId', [], signal), 'eth_chainId');
      if (id !== BigInt(this.config.chain_id)) {
        throw new Error(`the RPC endpoint ${this.rpc.where} serves chain ${id}, not the configured chain ${this.config.chain_id}`);
      }
      this.chainChecked = true;
    }
    const block = await this.readBlock(signal);
    const read: Read = async (to, signature, values, decode, what) => {
      const result = await this.rpc.call('eth_call', [{ to, data: encodeCall(signature, values) }, block], signal);
      return decode(hexData(result, what), what);
    };

    const node = namehashOf(labels);
    const resolver = await read(this.registry, 'resolver(bytes32)', [node], decodeAddress, 'registry resolver()');
    if (resolver === ZERO_ADDRESS) {
      // A name that has an owner but no resolver exists in ENS and publishes nothing: NODATA, not NXDOMAIN, which would
      // tell caches (RFC 8020) that its subnames do not exist either.
      const owner = await read(this.registry, 'owner(bytes32)', [node], decodeAddress, 'registry owner()');
      return { rcode: owner === ZERO_ADDRESS ? RCODE.NXDOMAIN : RCODE.NOERROR, answers: [], ttl };
    }
    const supports = (id: Buffer, profile: string) => read(resolver, 'supportsInterface(bytes4)', [id], decodeBool, `resolver supportsInterface(${profile})`);

    if (await supports(INTERFACE.DNS_RECORD, 'dnsRecord')) {
      const args = [node, keccak256(dnsWireName(name)), qtype];
      const data = await read(resolver, 'dnsRecord(bytes32,bytes32,uint16)', args, decodeBytes, `resolver dnsRecord(${typeName(qtype)})`);
      const records = this.checkedRecords(data, name, qtype);
      if (records.length > 0) return { rcode: RCODE.NOERROR, answers: records, ttl };
    }
    if (qtype !== TYPE.TXT) return { rcode: RCODE.NOERROR, answers: [], ttl };
    const texts = await this.profileTexts(read, resolver, node, supports);
    return { rcode: RCODE.NOERROR, answers: texts.map((t) => txtRecord(name, t, ttl)), ttl };
  }

  /** The block every read of one resolution is made at, so they see one state of the chain. */
  private async readBlock(signal: AbortSignal): Promise<string> {
    const head = quantity(await this.rpc.call('eth_blockNumber', [], signal), 'eth_blockNumber');
    const at = head - BigInt(this.config.confirmations);
    if (at < 0n) throw new Error(`the chain has ${head + 1n} blocks, fewer than the ${this.config.confirmations} confirmations required`);
    return `0x${at.toString(16)}`;
  }

  private checkedRecords(data: Buffer, name: string, qtype: number): ResourceRecord[] {
    const records = decodeRecords(data);
    for (const rr of records) {
      if (rr.name.toLowerCase() !== name || rr.type !== qtype || rr.cls !== CLASS_IN) {
        throw new Error(`the resolver's DNS records for ${typeName(qtype)} hold ${rr.name} ${rr.cls === CLASS_IN ? 'IN' : `CLASS${rr.cls}`} ${typeName(rr.type)}, not only ${name} IN ${typeName(qtype)}`);
      }
    }
    return records.map((rr) => ({ ...rr, name }));
  }

  /** The ENS profile as TXT strings: `a=<address>`, `contenthash=<uri>`, `<key>=<value>`. */
  private async profileTexts(read: Read, resolver: string, node: Buffer, supports: (id: Buffer, profile: string) => Promise<boolean>): Promise<string[]> {
    const keys = this.config.text_keys;
    const [hasAddr, hasHash, hasText] = await Promise.all([
      supports(INTERFACE.ADDR, 'addr'),
      supports(INTERFACE.CONTENTHASH, 'contenthash'),
      keys.length > 0 ? supports(INTERFACE.TEXT, 'text') : false,
    ]);
    const [addr, hash, texts] = await Promise.all([
      hasAddr ? read(resolver, 'addr(bytes32)', [node], decodeAddress, 'resolver addr()') : ZERO_ADDRESS,
      hasHash ? read(resolver, 'contenthash(bytes32)', [node], decodeBytes, 'resolver contenthash()') : Buffer.alloc(0),
      Promise.all(keys.map((key) => (hasText ? read(resolver, 'text(bytes32,string)', [node, key], decodeString, `resolver text(${key})`) : ''))),
    ]);
    const out: string[] = [];
    if (addr !== ZERO_ADDRESS) out.push(`a=${checksumAddress(addr)}`);
    if (hash.length > 0) out.push(`contenthash=${decodeContenthash(hash)}`);
    keys.forEach((key, i) => {
      if (texts[i] !== '') out.push(`${key}=${texts[i]}`);
    });
    return out;
  }
}

export function createEnsResolver(config: EnsConfig): EnsResolver {
  return new EnsResolver(config);
}
