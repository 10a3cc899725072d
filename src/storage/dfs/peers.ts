// Chunks between storage nodes (docs/dcfs.md, "Between nodes"): one dfs instance puts, gets and asks about chunks
// on another node's disks through its own node gateway, which reaches the named device's instance (NODE_HEADER)
// over the device tunnels. Plain HTTP with the raw bytes as the body: no JSON envelope around megabytes.
import { constants } from 'node:buffer';
import { createHash } from 'node:crypto';
import { open, rm, statfs } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { dirname } from 'node:path';
import { NODE_HEADER, keepAliveAgent } from '../../lib/krpc/index.ts';
import type { PlacementPolicy } from '../../lib/config/storage-records.ts';

export class PeerError extends Error {
  constructor(
    message: string,
    /** The HTTP status the peer answered with, or 0 when it could not be reached. */
    readonly status: number,
  ) {
    super(message);
    this.name = 'PeerError';
  }
}

const agent = keepAliveAgent({ maxSockets: 32 });

function collect(res: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        res.destroy(new Error(`answer larger than ${limit} bytes`));
        return;
      }
      parts.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(parts)));
    res.on('error', reject);
  });
}

export interface PeerOptions {
  /** The local node gateway, e.g. http://127.0.0.1:3180. */
  gatewayUrl: string;
  token: () => Promise<string>;
  timeoutMs?: number;
}

/** The largest body a chunk request moves: the chunker's largest chunk, with room. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

/** How much of a volume's log a primary sends in one answer, past the first two entries, which it sends whatever
 * their size (http.ts, metaLog). */
export const LOG_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * The largest log answer a follower takes. An entry has no bound of its own: a write or copy lists every chunk (about
 * 95 bytes each), so a 170 GiB file makes a 64 MiB entry, and a follower refusing the answer that carries it would ask
 * for it again every second, for good. The answer is parsed as one string, so the longest string Node can hold is as
 * much as a follower could take anyway; the primary too made each entry as one string to log it.
 */
const MAX_LOG_ANSWER_BYTES = constants.MAX_STRING_LENGTH;

/** Headers of a metadata snapshot's answer (http.ts metaSnapshot): the seq it holds and its SHA-256 (hex). */
export const SNAPSHOT_SEQ_HEADER = 'x-dfs-snapshot-seq';
export const SNAPSHOT_SHA256_HEADER = 'x-dfs-snapshot-sha256';

/**
 * How long a snapshot request may go without a byte moving. The primary answers once the snapshot is made and
 * hashed, which for a large namespace takes a while (SQLite's backup and a SHA-256 pass over gigabytes).
 */
const SNAPSHOT_IDLE_MS = 10 * 60_000;

/** Room a received snapshot must leave on the follower's filesystem: the metadata it replaces still grows meanwhile. */
const SNAPSHOT_SPARE_BYTES = 64 * 1024 * 1024;

export class PeerChunks {
  constructor(private readonly opts: PeerOptions) {}

  private async call(node: string, method: string, path: string, body: Buffer | null, limit: number): Promise<{ status: number; body: Buffer }> {
    const token = await this.opts.token();
    const url = `${this.opts.gatewayUrl.replace(/\/$/, '')}/kapi/dfs${path}`;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent,
          timeout: this.opts.timeoutMs ?? 30_000,
          headers: {
            [NODE_HEADER]: node,
            authorization: `Bearer ${token}`,
            ...(body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : { 'content-length': 0 }),
          },
        },
        (res) => {
          collect(res, limit).then((b) => resolve({ status: res.statusCode ?? 0, body: b }), reject);
        },
      );
      req.on('timeout', () => req.destroy(new PeerError(`${node}: no answer within ${this.opts.timeoutMs ?? 30_000} ms`, 0)));
      req.on('error', (err) => reject(err instanceof PeerError ? err : new PeerError(`${node}: ${err.message}`, 0)));
      req.end(body ?? undefined);
    });
  }

  private static fail(node: string, what: string, r: { status: number; body: Buffer }): never {
    let message = r.body.toString('utf8').slice(0, 300);
    try {
      message = (JSON.parse(message) as { error?: { message?: string } }).error?.message ?? message;
    } catch {
      // A plain-text answer is its own message.
    }
    throw new PeerError(`${node}: ${what}: HTTP ${r.status}: ${message}`, r.status);
  }

  /** Stores a chunk on one of the node's disks, durably, before it answers. */
  async put(node: string, disk: string, id: string, data: Buffer): Promise<void> {
    const r = await this.call(node, 'PUT', `/chunks/${encodeURIComponent(disk)}/${id}`, data, 64 * 1024);
    if (r.status !== 200 && r.status !== 201) PeerChunks.fail(node, `put ${id}`, r);
  }

  /** Removes a chunk from one of the node's disks if its other copies still meet `policy` (ChunkIO.dropIfCovered). */
  async dropIfCovered(node: string, disk: string, id: string, policy: PlacementPolicy): Promise<boolean> {
    const query = `copies=${policy.copies}&failure_domain=${policy.failure_domain}`;
    const r = await this.call(node, 'DELETE', `/chunks/${encodeURIComponent(disk)}/${id}?${query}`, null, 64 * 1024);
    if (r.status !== 200) PeerChunks.fail(node, `drop ${id}`, r);
    const answer = JSON.parse(r.body.toString('utf8')) as { deleted?: unknown };
    if (typeof answer.deleted !== 'boolean') throw new PeerError(`${node}: drop ${id}: a malformed answer`, r.status);
    return answer.deleted;
  }

  /** A chunk's bytes, verified by the peer before it sends them (and again by the caller). */
  async get(node: string, id: string): Promise<Buffer> {
    const r = await this.call(node, 'GET', `/chunks/any/${id}`, null, MAX_CHUNK_BYTES);
    if (r.status !== 200) PeerChunks.fail(node, `get ${id}`, r);
    return r.body;
  }

  /** Which of `ids` the node holds, on which of its disks. */
  async has(node: string, ids: readonly string[]): Promise<Map<string, string[]>> {
    const r = await this.call(node, 'POST', '/chunks-has', Buffer.from(JSON.stringify({ ids })), 16 * 1024 * 1024);
    if (r.status !== 200) PeerChunks.fail(node, 'has', r);
    const found = JSON.parse(r.body.toString('utf8')) as { found: Record<string, string[]> };
    return new Map(Object.entries(found.found));
  }

  /** A page of what a volume keeps alive (gc.ts LivePage), from its primary. */
  async live(node: string, volume: string, after: string, limit: number): Promise<{ ids: string[]; writing: string[]; origin?: { instance: string; seq: number } }> {
    const r = await this.call(node, 'GET', `/meta/${encodeURIComponent(volume)}/live?after=${encodeURIComponent(after)}&limit=${limit}`, null, 64 * 1024 * 1024);
    if (r.status !== 200) PeerChunks.fail(node, `live chunks of ${volume}`, r);
    const page = JSON.parse(r.body.toString('utf8')) as { ids?: unknown; writing?: unknown; origin?: { instance?: unknown; seq?: unknown } };
    const ok = (x: unknown): x is string[] => Array.isArray(x) && x.every((i) => typeof i === 'string');
    const origin = page.origin;
    const originOk = origin === undefined || (typeof origin.instance === 'string' && Number.isSafeInteger(origin.seq));
    if (!ok(page.ids) || !ok(page.writing) || !originOk) throw new PeerError(`${node}: live chunks of ${volume}: a malformed answer`, r.status);
    return { ids: page.ids, writing: page.writing, ...(origin ? { origin: { instance: origin.instance as string, seq: origin.seq as number } } : {}) };
  }

  /**
   * Log entries of a volume's metadata after `afterSeq`, from its primary, with the primary's last seq and the last
   * entry it no longer keeps (`logStart`: when that is past `afterSeq`, no entries come, and the caller needs a
   * snapshot). `from` is the asking follower, whose position the primary keeps its log for.
   */
  async log(node: string, volume: string, afterSeq: number, limit: number, from: string): Promise<{ entries: unknown[]; lastSeq: number; logStart: number }> {
    const query = `after=${afterSeq}&limit=${limit}&from=${encodeURIComponent(from)}`;
    const r = await this.call(node, 'GET', `/meta/${encodeURIComponent(volume)}/log?${query}`, null, MAX_LOG_ANSWER_BYTES);
    if (r.status !== 200) PeerChunks.fail(node, `log of ${volume}`, r);
    const answer = JSON.parse(r.body.toString('utf8')) as { entries?: unknown; last_seq?: unknown; log_start?: unknown };
    // A primary that does not say where its log starts runs a version from before logs were truncated: it keeps all.
    const logStart = answer.log_start ?? 0;
    if (!Array.isArray(answer.entries) || !Number.isSafeInteger(answer.last_seq) || !Number.isSafeInteger(logStart)) {
      throw new PeerError(`${node}: log of ${volume}: a malformed answer`, r.status);
    }
    return { entries: answer.entries as unknown[], lastSeq: answer.last_seq as number, logStart: logStart as number };
  }

  /**
   * A snapshot of a volume's metadata from its primary, streamed into `file` (made anew) and synced: its length and
   * SHA-256 are checked against what the primary declared, and it must fit on the filesystem with room to spare.
   * Answers the seq the primary says it holds (the caller checks that against the file). On any failure the file is
   * removed; `signal` aborts the download.
   */
  async snapshot(node: string, volume: string, file: string, from: string, signal?: AbortSignal): Promise<{ seq: number; bytes: number }> {
    const token = await this.opts.token();
    const url = `${this.opts.gatewayUrl.replace(/\/$/, '')}/kapi/dfs/meta/${encodeURIComponent(volume)}/snapshot?from=${encodeURIComponent(from)}`;
    const what = `snapshot of ${volume}`;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, { method: 'GET', agent, signal, timeout: SNAPSHOT_IDLE_MS, headers: { [NODE_HEADER]: node, authorization: `Bearer ${token}` } }, resolve);
      req.on('timeout', () => req.destroy(new PeerError(`${node}: ${what}: nothing moved for ${SNAPSHOT_IDLE_MS} ms`, 0)));
      req.on('error', (err) => reject(err instanceof PeerError ? err : new PeerError(`${node}: ${what}: ${err.message}`, 0)));
      req.end();
    });
    if (res.statusCode !== 200) PeerChunks.fail(node, what, { status: res.statusCode ?? 0, body: await collect(res, 64 * 1024) });
    const seq = Number(res.headers[SNAPSHOT_SEQ_HEADER]);
    const sha256 = res.headers[SNAPSHOT_SHA256_HEADER];
    const length = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(seq) || seq < 0 || typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256) || !Number.isSafeInteger(length) || length < 1) {
      res.destroy();
      throw new PeerError(`${node}: ${what}: the answer lacks its seq, SHA-256 or length`, 200);
    }
    const fs = await statfs(dirname(file));
    if (length + SNAPSHOT_SPARE_BYTES > fs.bavail * fs.bsize) {
      res.destroy();
      throw new PeerError(`${node}: ${what}: ${length} bytes do not fit beside this node's metadata (${fs.bavail * fs.bsize} bytes free)`, 200);
    }
    const fh = await open(file, 'wx', 0o600);
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of res as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > length) throw new PeerError(`${node}: ${what}: more than the ${length} bytes declared`, 200);
        hash.update(chunk);
        await fh.write(chunk);
      }
      if (bytes !== length) throw new PeerError(`${node}: ${what}: ended after ${bytes} of ${length} bytes`, 200);
      if (hash.digest('hex') !== sha256) throw new PeerError(`${node}: ${what}: the bytes received do not have the SHA-256 the primary declared`, 200);
      await fh.datasync();
      await fh.close();
      return { seq, bytes };
    } catch (err) {
      res.destroy();
      await fh.close().catch(() => undefined);
      await rm(file, { force: true });
      throw err instanceof PeerError ? err : new PeerError(`${node}: ${what}: ${(err as Error).message}`, 0);
    }
  }
}
