// The system-config backend for zones with 3, 5 or 7 core nodes: every key lives in an etcd cluster under one namespace
// prefix, and revisions are etcd's own (mod_revision / create_revision), so watches resume across members.
import {
  castGrpcError,
  ClientClosedError,
  Etcd3,
  GRPCOutOfRangeError,
  isRecoverableError,
  type ICompare,
  type IKeyValue,
  type IRangeRequest,
  type IRequestOp,
  type IResponseHeader,
  type IWatchResponse,
} from 'etcd3';
import { runOnce } from '../../../lib/etcd/run-once.ts';
import {
  StoreError,
  type ConfigEntry,
  type ConfigStore,
  type ListResult,
  type TxCompare,
  type TxOp,
  type TxResult,
  type WatchEvent,
} from '../store.ts';
import { assertDistinctOpKeys } from './tx-rules.ts';

export interface EtcdStoreOptions {
  /** Client URLs of the cluster members, e.g. `http://127.0.0.1:2379`. */
  hosts: string[];
  /** Key namespace inside etcd; default '/buckyos/'. */
  prefix?: string;
  /** Deadline of one etcd request; a member that stops answering surfaces as UNAVAILABLE after it. Default 10 s. */
  requestTimeoutMs?: number;
  /** Client TLS: the zone CA and this device's certificate and key (docs/etcd-control.md). */
  credentials?: { rootCertificate: Buffer; certChain: Buffer; privateKey: Buffer };
  /**
   * A key whose presence refuses (UNAVAILABLE) every write that does not itself touch that key, checked by etcd in
   * the write's own transaction: the zone store's freeze, which a write already past a system-config instance's own
   * check (it may take up to the request deadline to land) must not slip through while the store is copied.
   */
  frozenWhile?: string;
}

const DEFAULT_PREFIX = '/buckyos/';
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
const PAGE_SIZE = 1000;
/** How often a call whose every member's circuit is open tries again (the breakers half-open after 5 s). */
const CIRCUIT_RETRY_MS = 250;
// The first key and the range end that together select every key in etcd.
const ALL_KEYS = Buffer.from([0]);

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return ALL_KEYS;
}

function isCompactedError(err: unknown): boolean {
  return err instanceof GRPCOutOfRangeError && err.message.includes('compacted');
}

/** The client's circuit breaker (cockatiel) refuses calls to a member that keeps failing; it marks its errors so. */
function isCircuitOpen(err: Error): boolean {
  return 'isBrokenCircuitError' in err;
}

/**
 * True when no member can have received the request, so repeating a write cannot apply it twice. The same rule as
 * etcd's Go client: only "no connection" failures; a timeout or a dropped connection leaves the outcome unknown.
 */
function neverSent(err: Error): boolean {
  return isCircuitOpen(err) || err.message.includes('No connection established');
}

/** Maps client and transport failures to StoreError; errors that are the caller's fault pass through unchanged. */
function translateError(raw: unknown): unknown {
  if (raw instanceof StoreError || !(raw instanceof Error)) return raw;
  // Errors from raw grpc streams arrive untyped; the client's unary calls already type theirs.
  const err = castGrpcError(raw);
  if (isCompactedError(err)) return new StoreError('COMPACTED', 'etcd history at that revision has been compacted');
  if (isRecoverableError(err) || err instanceof ClientClosedError || isCircuitOpen(err)) {
    // grpc and etcd messages name the failure and the member address, never credentials.
    return new StoreError('UNAVAILABLE', `etcd unavailable: ${err.message}`);
  }
  return err;
}

function headerRevision(header: IResponseHeader): number {
  return Number(header.revision);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}


export function openEtcdStore(opts: EtcdStoreOptions): ConfigStore {
  const ns = opts.prefix ?? DEFAULT_PREFIX;
  const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const client = new Etcd3({
    hosts: opts.hosts,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    // Streams (watches) live as long as they are needed; only unary calls get a deadline.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + requestTimeoutMs }),
    // A full listing or a catch-up watch batch can pass grpc's 4 MiB default; etcd bounds what it sends.
    grpcOptions: { 'grpc.max_receive_message_length': -1 },
    faultHandling: { global: runOnce },
  });
  // Enough attempts to move past every member once and still meet one that is back.
  const maxAttempts = opts.hosts.length + 1;
  const kv = client.kv;
  const nsBuf = Buffer.from(ns);
  const nsEnd = prefixEnd(nsBuf);
  const pendingWaits = new Set<() => void>();
  let closed = false;

  const fullKey = (key: string): Buffer => Buffer.from(ns + key);
  const shortKey = (key: Buffer): string => key.toString('utf8').slice(ns.length);
  const toEntry = (item: IKeyValue): ConfigEntry => ({
    key: shortKey(item.key),
    value: item.value.toString('utf8'),
    revision: Number(item.mod_revision),
    createRevision: Number(item.create_revision),
  });
  /** `revision: 0` means "missing"; etcd reports version 0 for a key that does not exist. */
  const compareRevision = (key: string, revision: number): ICompare =>
    revision === 0
      ? { key: fullKey(key), target: 'Version', result: 'Equal', version: 0 }
      : { key: fullKey(key), target: 'Mod', result: 'Equal', mod_revision: revision };
  const putOp = (key: string, value: string): IRequestOp => ({
    request_put: { key: fullKey(key), value: Buffer.from(value, 'utf8') },
  });
  const rangeOp = (key: string): IRequestOp => ({ request_range: { key: fullKey(key) } });
  const frozenKey = opts.frozenWhile;
  /** Whether a write of these keys must meet the freeze: this store has one and the write does not touch its key. */
  const guarded = (keys: string[]): boolean => frozenKey !== undefined && !keys.includes(frozenKey);
  /** The freeze compare for such a write: the key must not exist. */
  const unfrozen = (keys: string[]): ICompare[] => (guarded(keys) ? [compareRevision(frozenKey!, 0)] : []);
  /** Reads the freeze key among a guarded write's failure ops, always last, so a refusal can say why. */
  const freezeRead = (keys: string[]): IRequestOp[] => (guarded(keys) ? [rangeOp(frozenKey!)] : []);
  /** Throws when a failed guarded transaction failed because the store is frozen. */
  const refuseIfFrozen = (keys: string[], responses: { response_range: { kvs: unknown[] } }[]): void => {
    if (guarded(keys) && responses[responses.length - 1]!.response_range.kvs.length > 0) {
      throw new StoreError('UNAVAILABLE', `the zone store is frozen (${frozenKey} is set): it is being moved; retry shortly`);
    }
  };

  /**
   * Runs one store operation, retrying on another member when that is safe: reads always (`idempotent`), writes only
   * when the request never left this process. A write whose outcome is unknown fails with UNAVAILABLE rather than
   * being repeated into a misleading CONFLICT or ALREADY_EXISTS.
   */
  async function call<T>(idempotent: boolean, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + requestTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (raw) {
        const err = translateError(raw);
        // Every member's breaker open (each met three failures in a row, as in an election or a membership change):
        // nothing was sent, and a breaker lets a call through again a few seconds later (half-open). Waiting for
        // that, within the request's deadline, beats failing calls the members could answer by then.
        const circuitOpen = raw instanceof Error && isCircuitOpen(castGrpcError(raw));
        const retry =
          !closed &&
          err instanceof StoreError &&
          err.code === 'UNAVAILABLE' &&
          (circuitOpen
            ? Date.now() + CIRCUIT_RETRY_MS < deadline
            : attempt < maxAttempts && (idempotent || (raw instanceof Error && neverSent(castGrpcError(raw)))));
        if (!retry) throw err;
        await sleep(circuitOpen ? CIRCUIT_RETRY_MS : 50 * attempt);
      }
    }
  }

  async function readRevision(): Promise<number> {
    // A single-key range: its header carries the store revision without counting the namespace.
    const res = await kv.range({ key: nsBuf, count_only: true });
    return headerRevision(res.header);
  }

  async function listRange(start: Buffer, end: Buffer, limit?: number): Promise<ListResult> {
    const entries: ConfigEntry[] = [];
    let revision = 0;
    let from = start;
    // Pages are read at the first page's revision so the listing is one consistent snapshot.
    for (;;) {
      const want = limit === undefined ? PAGE_SIZE : Math.min(PAGE_SIZE, limit - entries.length);
      if (want <= 0) break;
      const req: IRangeRequest = { key: from, range_end: end, limit: want, sort_order: 'Ascend', sort_target: 'Key' };
      if (revision > 0) req.revision = revision;
      const res = await kv.range(req);
      if (revision === 0) revision = headerRevision(res.header);
      for (const item of res.kvs) entries.push(toEntry(item));
      if (!res.more || res.kvs.length === 0) break;
      from = Buffer.concat([res.kvs[res.kvs.length - 1].key, ALL_KEYS]);
    }
    if (revision === 0) revision = await readRevision();
    return { entries, revision };
  }

  /**
   * Reads history with a watch over the whole keyspace from `afterRevision + 1` up to `upTo`. The whole keyspace,
   * not just the prefix, because only then is an event at `upTo` certain to arrive and end the read; etcd 3.4's
   * progress requests can overtake pending events, so they cannot mark the end.
   */
  async function readHistory(prefix: Buffer, afterRevision: number, upTo: number, limit: number): Promise<WatchEvent[]> {
    const stream = await client.watchClient.watch();
    return new Promise<WatchEvent[]>((resolve, reject) => {
      const events: WatchEvent[] = [];
      let lastSeen = afterRevision;
      let settled = false;
      // An idle timeout, not a total one: a long catch-up is fine as long as etcd keeps sending.
      const stall = (): NodeJS.Timeout =>
        setTimeout(() => finish(new StoreError('UNAVAILABLE', 'etcd: reading history stalled')), requestTimeoutMs);
      let timer = stall();
      function finish(err?: unknown): void {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // Ending our side first keeps the client from counting the cancellation as a failure of the member.
        stream.end();
        stream.cancel();
        if (err === undefined) resolve(events);
        else reject(translateError(err));
      }
      stream.on('data', (res: IWatchResponse) => {
        if (settled) return;
        clearTimeout(timer);
        timer = stall();
        if (res.created) return;
        if (res.canceled) {
          finish(
            Number(res.compact_revision) > 0
              ? new StoreError('COMPACTED', `etcd history before revision ${res.compact_revision} has been compacted`)
              : new StoreError('UNAVAILABLE', `etcd watch canceled: ${res.cancel_reason}`),
          );
          return;
        }
        for (const ev of res.events) {
          const revision = Number(ev.kv.mod_revision);
          // A reader resumes after the last revision it saw, so a revision is returned whole or not at all.
          if (revision > upTo || (events.length >= limit && revision !== events.at(-1)?.revision)) {
            finish();
            return;
          }
          lastSeen = revision;
          if (!ev.kv.key.subarray(0, prefix.length).equals(prefix)) continue;
          const type = ev.type === 'Delete' ? 'delete' : 'put';
          events.push({
            type,
            key: shortKey(ev.kv.key),
            value: type === 'put' ? ev.kv.value.toString('utf8') : null,
            revision,
          });
        }
        // Unfragmented responses end on a revision boundary, so the last revision seen is complete.
        if (!res.fragment && lastSeen >= upTo) finish();
      });
      stream.on('error', (err: Error) => finish(err));
      stream.on('end', () => finish(new StoreError('UNAVAILABLE', 'etcd watch stream ended')));
      stream.write({
        create_request: { key: ALL_KEYS, range_end: ALL_KEYS, start_revision: afterRevision + 1, fragment: true },
      });
    });
  }

  return {
    get(key) {
      return call(true, async () => {
        const res = await kv.range({ key: fullKey(key) });
        return res.kvs.length > 0 ? toEntry(res.kvs[0]) : null;
      });
    },

    set(key, value, expectRevision) {
      return call(false, async () => {
        if (expectRevision === undefined && !guarded([key])) {
          const res = await kv.put({ key: fullKey(key), value: Buffer.from(value, 'utf8') });
          return headerRevision(res.header);
        }
        const res = await kv.txn({
          compare: [...(expectRevision === undefined ? [] : [compareRevision(key, expectRevision)]), ...unfrozen([key])],
          success: [putOp(key, value)],
          failure: [rangeOp(key), ...freezeRead([key])],
        });
        if (!res.succeeded) {
          refuseIfFrozen([key], res.responses as never);
          const found = Number(res.responses[0].response_range.kvs[0]?.mod_revision ?? 0);
          throw new StoreError('CONFLICT', `${key}: expected revision ${expectRevision}, found ${found}`);
        }
        return headerRevision(res.header);
      });
    },

    create(key, value) {
      return call(false, async () => {
        const res = await kv.txn({ compare: [compareRevision(key, 0), ...unfrozen([key])], success: [putOp(key, value)], failure: [rangeOp(key), ...freezeRead([key])] });
        if (!res.succeeded) {
          refuseIfFrozen([key], res.responses as never);
          throw new StoreError('ALREADY_EXISTS', `${key} already exists`);
        }
        return headerRevision(res.header);
      });
    },

    delete(key, expectRevision) {
      return call(false, async () => {
        const compare: ICompare[] = [{ key: fullKey(key), target: 'Version', result: 'Greater', version: 0 }];
        if (expectRevision !== undefined) compare.push(compareRevision(key, expectRevision));
        compare.push(...unfrozen([key]));
        const res = await kv.txn({
          compare,
          success: [{ request_delete_range: { key: fullKey(key) } }],
          failure: [rangeOp(key), ...freezeRead([key])],
        });
        if (res.succeeded) return headerRevision(res.header);
        refuseIfFrozen([key], res.responses as never);
        const found = res.responses[0].response_range.kvs[0];
        if (found === undefined) throw new StoreError('NOT_FOUND', `${key} does not exist`);
        throw new StoreError('CONFLICT', `${key}: expected revision ${expectRevision}, found ${found.mod_revision}`);
      });
    },

    list(prefix, limit) {
      return call(true, () => {
        const start = fullKey(prefix);
        return listRange(start, prefixEnd(start), limit);
      });
    },

    execTx(compares: TxCompare[], ops: TxOp[]): Promise<TxResult> {
      return call(false, async () => {
        assertDistinctOpKeys(ops);
        const creates = ops.filter((op) => op.op === 'create').map((op) => op.key);
        const checked = [...new Set([...compares.map((c) => c.key), ...creates])];
        const written = ops.map((op) => op.key);
        const res = await kv.txn({
          compare: [...compares.map((c) => compareRevision(c.key, c.revision)), ...creates.map((k) => compareRevision(k, 0)), ...unfrozen(written)],
          success: ops.map((op) =>
            op.op === 'delete' ? { request_delete_range: { key: fullKey(op.key) } } : putOp(op.key, op.value),
          ),
          // Read every checked key in the same atomic step, so the reported conflicts are exactly why it failed.
          failure: [...checked.map(rangeOp), ...freezeRead(written)],
        });
        const revision = headerRevision(res.header);
        if (res.succeeded) return { succeeded: true, revision, conflicts: [] };
        refuseIfFrozen(written, res.responses as never);
        const current = new Map<string, number>();
        checked.forEach((key, i) => {
          current.set(key, Number(res.responses[i].response_range.kvs[0]?.mod_revision ?? 0));
        });
        const conflicts = new Set<string>();
        for (const c of compares) if (current.get(c.key) !== c.revision) conflicts.add(c.key);
        for (const key of creates) if (current.get(key) !== 0) conflicts.add(key);
        return { succeeded: false, revision, conflicts: [...conflicts] };
      });
    },

    changesSince(prefix, afterRevision, limit) {
      return call(true, async () => {
        // A negative start would make etcd watch from "now" and never reach the end of the read.
        const after = Math.max(0, afterRevision);
        const upTo = await readRevision();
        // etcd's revision 1 is the empty initial state: no event ever carries it.
        if (after >= upTo || upTo <= 1) return [];
        // Compaction at revision C keeps C's puts but drops its deletes, so history is complete only after C.
        try {
          await kv.range({ key: nsBuf, count_only: true, revision: Math.max(after, 1) });
        } catch (err) {
          if (isCompactedError(err)) {
            throw new StoreError('COMPACTED', `etcd history after revision ${after} has been compacted`);
          }
          throw err;
        }
        return readHistory(fullKey(prefix), after, upTo, limit);
      });
    },

    waitForChange(afterRevision, timeoutMs, signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (closed) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        // The client re-creates the watch after a member fails, resuming from the last revision it delivered.
        const from = Math.max(0, afterRevision) + 1;
        const watcher = client.watch().prefix(nsBuf).startRevision(String(from)).watcher();
        const finish = (err?: unknown): void => {
          clearTimeout(timer);
          pendingWaits.delete(onClose);
          signal?.removeEventListener('abort', onAbort);
          watcher.removeAllListeners();
          // An error here (closed client, broken stream) changes nothing for the caller, who is already answered.
          watcher.on('error', () => undefined);
          watcher.cancel().catch(() => undefined);
          if (err === undefined) resolve();
          else reject(err);
        };
        const onClose = (): void => finish();
        const onAbort = (): void => finish(signal?.reason);
        const timer = setTimeout(finish, Math.max(0, timeoutMs));
        pendingWaits.add(onClose);
        signal?.addEventListener('abort', onAbort, { once: true });
        watcher.on('data', (res) => {
          if (res.events.length > 0) finish();
        });
        // A canceled watch (its start revision was compacted) means the caller must re-read: a change "may exist".
        watcher.on('error', () => finish());
      });
    },

    currentRevision() {
      return call(true, readRevision);
    },

    dump() {
      return call(true, () => listRange(nsBuf, nsEnd));
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const wake of [...pendingWaits]) wake();
      client.close();
    },
  };
}
