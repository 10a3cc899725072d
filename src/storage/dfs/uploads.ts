// Resumable uploads (docs/dcfs.md, "Uploads"): the bytes of an upload are spooled on the volume's primary, part by
// part, each part appended at the offset the server holds and synced before it is acknowledged, so a client that lost
// its connection asks where to resume and goes on. Nothing is visible until commit stores the whole file through the
// normal write path. Spools outlive a restart of the service and expire after a day. An upload's id names its volume,
// so that a call or part reaching another node is passed on to the primary (uploadVolume; service.ts, http.ts).
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/identity/keys.ts';
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { UPLOAD_ID } from '../../lib/api/dfs.ts';

export const UPLOAD_TTL_MS = 24 * 3600 * 1000;

const GONE = 'no such upload (it was committed, aborted or has expired, or the volume has had another primary since it began)';

/** The volume an upload id names: the upload runs on that volume's primary, which holds its spool. */
export function uploadVolume(id: string): string {
  return parseId(id).volume;
}

function parseId(id: string): { volume: string; key: string } {
  const m = UPLOAD_ID.exec(id);
  if (!m) throw new KrpcError('INVALID_PARAMS', `upload id ${JSON.stringify(id.slice(0, 80))} is not one upload_begin gives (<volume>.<22 characters>)`);
  return { volume: m[1]!, key: m[2]! };
}

export interface UploadRecord {
  id: string;
  volume: string;
  path: string;
  size: number;
  user: string;
  app: string;
  overwrite: boolean;
  created_at: number;
  expires_at: number;
}

export class Uploads {
  /** Spools being written or committed, by the random part of their ids (their files' names). */
  private readonly busy = new Set<string>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** A spool's files are named by the id's random part alone; its record holds the volume, which `get` checks. */
  private paths(id: string): { key: string; data: string; meta: string } {
    const { key } = parseId(id);
    return { key, data: join(this.dir, `${key}.part`), meta: join(this.dir, `${key}.json`) };
  }

  create(r: Omit<UploadRecord, 'id' | 'created_at' | 'expires_at'>): UploadRecord {
    const id = `${r.volume}.${randomBytes(16).toString('base64url')}`;
    const now = Date.now();
    const rec: UploadRecord = { ...r, id, created_at: now, expires_at: now + UPLOAD_TTL_MS };
    const p = this.paths(id);
    // Durable before the id goes out, the spool first: a client told of an upload resumes it after a power cut, and
    // a record never names a spool that is not there.
    writeFileAtomic(p.data, '');
    writeFileAtomic(p.meta, JSON.stringify(rec));
    return rec;
  }

  /** The upload, if it exists, belongs to the caller and has not expired. */
  get(id: string, p: Principal): UploadRecord & { offset: number } {
    const paths = this.paths(id);
    let rec: UploadRecord;
    try {
      rec = JSON.parse(readFileSync(paths.meta, 'utf8')) as UploadRecord;
    } catch {
      throw new KrpcError('NOT_FOUND', GONE);
    }
    // Someone else's upload id is as good as none: no hint that it exists. An id naming another volume than the
    // upload's is not its id.
    if (rec.user !== p.userId || rec.app !== p.appId || rec.id !== id) throw new KrpcError('NOT_FOUND', GONE);
    if (rec.expires_at < Date.now()) {
      this.drop(id);
      throw new KrpcError('NOT_FOUND', 'the upload has expired; start again');
    }
    let offset: number;
    try {
      offset = statSync(paths.data).size;
    } catch {
      throw new KrpcError('NOT_FOUND', GONE);
    }
    return { ...rec, offset };
  }

  /** Appends a part at `offset`, which must be where the upload stands; synced before it returns the new offset. */
  async append(id: string, p: Principal, offset: number, body: AsyncIterable<Uint8Array>, length: number | null): Promise<number> {
    const rec = this.get(id, p);
    const { key, data } = this.paths(id);
    if (this.busy.has(key)) throw new KrpcError('CONFLICT', 'another part of this upload is being written');
    if (offset !== rec.offset) throw new KrpcError('CONFLICT', `the upload stands at ${rec.offset} bytes, not ${offset}: resume from there`, { offset: rec.offset });
    if (length !== null && offset + length > rec.size) throw new KrpcError('INVALID_PARAMS', `the part ends at ${offset + length}, past the declared size ${rec.size}`);
    this.busy.add(key);
    const fh = await open(data, 'a');
    let at = offset;
    try {
      for await (const chunk of body) {
        if (at + chunk.length > rec.size) throw new KrpcError('INVALID_PARAMS', `more bytes than the declared size ${rec.size}`);
        await fh.write(chunk);
        at += chunk.length;
      }
      await fh.datasync();
      return at;
    } catch (err) {
      // A part that failed midway keeps what reached the disk; the client asks where to resume.
      await fh.datasync().catch(() => undefined);
      throw err;
    } finally {
      await fh.close();
      this.busy.delete(key);
    }
  }

  /** The spooled bytes, for commit. */
  read(id: string): AsyncIterable<Buffer> {
    return createReadStream(this.paths(id).data, { highWaterMark: 1024 * 1024 });
  }

  lock(id: string): void {
    const { key } = this.paths(id);
    if (this.busy.has(key)) throw new KrpcError('CONFLICT', 'this upload is busy (a part is being written or it is being committed)');
    this.busy.add(key);
  }

  unlock(id: string): void {
    this.busy.delete(this.paths(id).key);
  }

  drop(id: string): void {
    const p = this.paths(id);
    rmSync(p.data, { force: true });
    rmSync(p.meta, { force: true });
  }

  /** Removes expired spools and orphaned part files; returns how many uploads went. */
  sweep(now = Date.now()): number {
    let n = 0;
    for (const f of readdirSync(this.dir)) {
      // A temporary file of a create a crash interrupted (writeFileAtomic; creates are synchronous, so none is under way).
      if (/^[A-Za-z0-9_-]{22}\.(json|part)\.tmp-\d+-\d+$/.test(f)) {
        rmSync(join(this.dir, f), { force: true });
        continue;
      }
      const m = /^([A-Za-z0-9_-]{22})\.(json|part)$/.exec(f);
      if (!m) continue;
      const key = m[1]!;
      if (this.busy.has(key)) continue;
      let expired = false;
      try {
        expired = (JSON.parse(readFileSync(join(this.dir, `${key}.json`), 'utf8')) as UploadRecord).expires_at < now;
      } catch {
        expired = true;
      }
      if (expired && m[2] === 'json') n++;
      if (expired) rmSync(join(this.dir, f), { force: true });
    }
    return n;
  }
}
