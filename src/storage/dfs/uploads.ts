// Resumable uploads (docs/dcfs.md, "Uploads"): the bytes of an upload are spooled on the volume's primary, part by
// part, each part appended at the offset the server holds and synced before it is acknowledged, so a client that lost
// its connection asks where to resume and goes on. Nothing is visible until commit stores the whole file through the
// normal write path. Spools outlive a restart of the service and expire after a day.
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';

export const UPLOAD_TTL_MS = 24 * 3600 * 1000;
const ID = /^[A-Za-z0-9_-]{22}$/;

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
  private readonly busy = new Set<string>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private paths(id: string): { data: string; meta: string } {
    if (!ID.test(id)) throw new KrpcError('NOT_FOUND', 'no such upload');
    return { data: join(this.dir, `${id}.part`), meta: join(this.dir, `${id}.json`) };
  }

  create(r: Omit<UploadRecord, 'id' | 'created_at' | 'expires_at'>): UploadRecord {
    const id = randomBytes(16).toString('base64url');
    const now = Date.now();
    const rec: UploadRecord = { ...r, id, created_at: now, expires_at: now + UPLOAD_TTL_MS };
    const p = this.paths(id);
    writeFileSync(p.data, '');
    writeFileSync(p.meta, JSON.stringify(rec));
    return rec;
  }

  /** The upload, if it exists, belongs to the caller and has not expired. */
  get(id: string, p: Principal): UploadRecord & { offset: number } {
    const paths = this.paths(id);
    let rec: UploadRecord;
    try {
      rec = JSON.parse(readFileSync(paths.meta, 'utf8')) as UploadRecord;
    } catch {
      throw new KrpcError('NOT_FOUND', 'no such upload (it was committed, aborted or has expired)');
    }
    // Someone else's upload id is as good as none: no hint that it exists.
    if (rec.user !== p.userId || rec.app !== p.appId) throw new KrpcError('NOT_FOUND', 'no such upload (it was committed, aborted or has expired)');
    if (rec.expires_at < Date.now()) {
      this.drop(id);
      throw new KrpcError('NOT_FOUND', 'the upload has expired; start again');
    }
    return { ...rec, offset: statSync(paths.data).size };
  }

  /** Appends a part at `offset`, which must be where the upload stands; synced before it returns the new offset. */
  async append(id: string, p: Principal, offset: number, body: AsyncIterable<Uint8Array>, length: number | null): Promise<number> {
    const rec = this.get(id, p);
    if (this.busy.has(id)) throw new KrpcError('CONFLICT', 'another part of this upload is being written');
    if (offset !== rec.offset) throw new KrpcError('CONFLICT', `the upload stands at ${rec.offset} bytes, not ${offset}: resume from there`, { offset: rec.offset });
    if (length !== null && offset + length > rec.size) throw new KrpcError('INVALID_PARAMS', `the part ends at ${offset + length}, past the declared size ${rec.size}`);
    this.busy.add(id);
    const fh = await open(this.paths(id).data, 'a');
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
      this.busy.delete(id);
    }
  }

  /** The spooled bytes, for commit. */
  read(id: string): AsyncIterable<Buffer> {
    return createReadStream(this.paths(id).data, { highWaterMark: 1024 * 1024 });
  }

  lock(id: string): void {
    if (this.busy.has(id)) throw new KrpcError('CONFLICT', 'this upload is busy (a part is being written or it is being committed)');
    this.busy.add(id);
  }

  unlock(id: string): void {
    this.busy.delete(id);
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
      const m = /^([A-Za-z0-9_-]{22})\.(json|part)$/.exec(f);
      if (!m) continue;
      const id = m[1]!;
      if (this.busy.has(id)) continue;
      let expired = false;
      try {
        expired = (JSON.parse(readFileSync(join(this.dir, `${id}.json`), 'utf8')) as UploadRecord).expires_at < now;
      } catch {
        expired = true;
      }
      if (expired && m[2] === 'json') n++;
      if (expired) rmSync(join(this.dir, f), { force: true });
    }
    return n;
  }
}
