// `buckyos fs ...`: the zone's files (dcfs-lite, docs/dcfs.md). Files are named `<volume>:<path>` (or just `<path>`
// on the volume given by --volume). Bytes move over HTTP through the node gateway, uploads resumably in parts, with a
// progress bar on long transfers; disks and volumes are records in system-config that this command writes for
// admins after checking them.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, accessSync, constants } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
import { hostname } from 'node:os';
import { Readable, pipeline } from 'node:stream';
import { pipeline as pipe } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { dfsApi, type DfsEntry, type DfsVolumeStatus, uploadCommitTimeoutMs } from '../lib/api/dfs.ts';
import { systemConfigApi } from '../lib/api/system-config.ts';
import {
  DISK_ID, diskKey, diskRecordSchema, placementPolicySchema, promoteFollower, volumeKey, volumeRecordSchema, withFollowers, type VolumeRecord,
} from '../lib/config/storage-records.ts';
import { serviceInfoSchema } from '../lib/config/zone-records.ts';
import { KrpcError } from '../lib/krpc/index.ts';
import { loadNodeIdentity } from '../lib/identity/node-identity.ts';
import { CliContext } from './context.ts';

/** Upload part size: large enough to amortise a request, small enough that a broken connection loses little. */
const PART_BYTES = 16 * 1024 * 1024;
/** Resumes in a row, the upload getting no further, before `fs put` gives up; it waits a little longer each time. */
const RESUME_TRIES = 5;
const RESUME_BACKOFF_MS = 500;

interface FsOpts {
  volume: string;
  json?: boolean;
  progress?: boolean;
}

export function parseTarget(text: string, defaultVolume: string): { volume: string; path: string } {
  const m = /^([a-z][a-z0-9-]{0,31}):(\/.*)?$/.exec(text);
  const volume = m ? m[1]! : defaultVolume;
  const path = m ? (m[2] ?? '/') : text;
  if (!path.startsWith('/')) throw new Error(`"${text}": give an absolute path in the volume, e.g. ${volume}:/photos/a.jpg`);
  return { volume, path };
}

/**
 * Why a node's copy of a volume, as its dfs reports it, cannot become the volume's primary, or null. A follower at log
 * seq 0 holds nothing: opened as primary it would start the volume anew, empty, which only --force does.
 */
export function promotionRefusal(node: string, held: DfsVolumeStatus, force: boolean): string | null {
  if (held.role !== 'follower') return `${node} holds no follower copy of ${held.name} (its role: ${held.role})`;
  if (held.last_seq > 0 || force) return null;
  const why = held.sync_error ? `its last pull of the log failed: ${held.sync_error}` : 'it has not pulled the log yet';
  return `${node} holds nothing of ${held.name} (log seq 0; ${why}): as primary it would start ${held.name} anew, empty. Promote a follower that has followed, or pass --force to start it empty`;
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A one-line progress bar on stderr, redrawn at most 10 times a second; silent unless wanted. */
class Progress {
  private last = 0;
  private readonly start = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly on: boolean,
  ) {}

  update(done: number): void {
    if (!this.on) return;
    const now = Date.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    const width = 30;
    const frac = this.total === 0 ? 1 : Math.min(1, done / this.total);
    const rate = done / Math.max(0.001, (now - this.start) / 1000);
    process.stderr.write(`\r${this.label} [${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${(frac * 100).toFixed(0).padStart(3)}% ${human(done)}/${human(this.total)} ${human(rate)}/s `);
  }

  done(): void {
    if (this.on) process.stderr.write('\n');
  }

  /** A line of its own, below the bar drawn so far. */
  note(line: string): void {
    process.stderr.write(`${this.on ? '\n' : ''}${line}\n`);
  }
}

async function httpCall(c: CliContext, method: string, path: string, opts: { headers?: Record<string, string>; body?: Readable; bodyLength?: number } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; stream: Readable }> {
  const token = await c.getToken();
  return new Promise((resolve, reject) => {
    const req = request(`${c.gatewayUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(opts.bodyLength !== undefined ? { 'content-length': String(opts.bodyLength) } : {}), ...opts.headers },
    });
    req.on('response', (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, stream: res }));
    req.on('error', reject);
    // Not pipe: a request that fails must close the body's file, and a body that fails must fail the request.
    if (opts.body) pipeline(opts.body, req, (err) => err && reject(err));
    else req.end();
  });
}

async function answerOf(r: { status: number; stream: Readable }): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of r.stream) parts.push(c as Buffer);
  const text = Buffer.concat(parts).toString('utf8');
  let message = text;
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (e) message = `[${e.code}]: ${e.message}`;
  } catch {
    // A plain-text answer is its own message.
  }
  return `HTTP ${r.status} ${message}`;
}

async function failure(r: { status: number; stream: Readable }): Promise<never> {
  throw new Error(await answerOf(r));
}

function printEntries(entries: DfsEntry[]): void {
  for (const e of entries) {
    const when = new Date(e.mtime).toISOString().replace('T', ' ').slice(0, 19);
    console.log(`${e.type === 'dir' ? 'd' : '-'} ${human(e.size).padStart(10)}  ${when}  ${e.owner.padEnd(12)} ${basename(e.path) || '/'}${e.type === 'dir' ? '/' : ''}`);
  }
}

/**
 * The content id of a local file as it is uploaded: each byte hashed once, in order, when first sent. A part sent again
 * after a broken connection is read again, and if those bytes changed meanwhile, the server holds other bytes than were
 * hashed and the commit refuses them.
 */
class SentDigest {
  private readonly hash = createHash('sha256');
  private hashed = 0;

  constructor(private readonly local: string) {}

  /** Bytes [start, end) of the file, as an upload part's body. */
  part(start: number, end: number): Readable {
    const { local } = this;
    const self = this;
    return Readable.from(
      (async function* () {
        let at = start;
        for await (const b of createReadStream(local, { start, end: end - 1 })) {
          const buf = b as Buffer;
          if (at + buf.length > self.hashed) {
            self.hash.update(buf.subarray(Math.max(0, self.hashed - at)));
            self.hashed = at + buf.length;
          }
          at += buf.length;
          yield buf;
        }
        // Else the request would wait for bytes that never come, until the server gives up on it.
        if (at < end) throw new Error(`${local} shrank while it was uploaded`);
      })(),
      { objectMode: false },
    );
  }

  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/**
 * An upload that fails is aborted, its spool dropped: nothing can pick it up again (another `fs put` begins a new one),
 * so it would only wait out its 24 hours on the primary's disk.
 */
async function put(c: CliContext, local: string, volume: string, path: string, progress: boolean): Promise<DfsEntry> {
  const before = statSync(local);
  const size = before.size;
  const changed = () => {
    const now = statSync(local);
    return now.size !== size || now.mtimeMs !== before.mtimeMs;
  };
  const dfs = c.client(dfsApi);
  const up = await dfs.upload_begin({ volume, path, size });
  const bar = new Progress(`put ${basename(local)}`, size, progress);
  const sent = new SentDigest(local);
  let offset = up.offset;
  let failures = 0;
  /** Where the server stands after a part failed: a part may have landed partly, and only the server knows how far. */
  const resumeFrom = async (why: string): Promise<number> => {
    for (;;) {
      if (++failures > RESUME_TRIES) throw new Error(`${why}; gave up after resuming ${RESUME_TRIES} times`);
      await sleep(RESUME_BACKOFF_MS * failures);
      try {
        const at = (await dfs.upload_status({ upload_id: up.upload_id })).offset;
        // A link that breaks now and then but carries bytes is worth staying on, however large the file.
        if (at > offset) failures = 0;
        bar.note(`put ${basename(local)}: ${why}; resuming at ${at} of ${size} bytes`);
        return at;
      } catch (err) {
        if (!(err instanceof KrpcError && (err.code === 'UNAVAILABLE' || err.code === 'TIMEOUT'))) throw err;
        why = err.message;
      }
    }
  };
  try {
    while (offset < size) {
      const end = Math.min(size, offset + PART_BYTES);
      let r;
      try {
        r = await httpCall(c, 'PUT', up.url, {
          body: sent.part(offset, end),
          bodyLength: end - offset,
          headers: { 'content-range': `bytes ${offset}-${end - 1}/${size}`, 'content-type': 'application/octet-stream' },
        });
      } catch (err) {
        if (changed()) throw new Error(`${local} changed while it was uploaded; nothing was stored`);
        offset = await resumeFrom(`connection lost (${(err as Error).message})`);
        continue;
      }
      // 409: the server stands elsewhere, or still writes the part whose connection broke; 5xx: the gateway or dfs
      // is restarting. Anything else will not go away by asking again.
      if (r.status === 409 || r.status >= 500) {
        offset = await resumeFrom(await answerOf(r));
        continue;
      }
      if (r.status !== 200 && r.status !== 204) await failure(r);
      r.stream.resume();
      failures = 0;
      offset = end;
      bar.update(offset);
    }
    bar.update(size);
    bar.done();
    // The digest holds what was read; bytes changed since in a part already sent would not be in what is stored.
    if (changed()) throw new Error(`${local} changed while it was uploaded; nothing was stored`);
    return await dfs.upload_commit({ upload_id: up.upload_id, content_id: sent.digest() }, { timeoutMs: uploadCommitTimeoutMs(size) });
  } catch (err) {
    await dfs.upload_abort({ upload_id: up.upload_id }).catch(() => undefined);
    throw err;
  }
}

/** What a partial download `<local>.part` holds, kept beside it in `<local>.part.json`, written before its first byte. */
interface PartOf {
  volume: string;
  path: string;
  content_id: string;
}

function readPartOf(file: string): PartOf | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PartOf;
  } catch {
    return null;
  }
}

async function get(c: CliContext, volume: string, path: string, local: string, progress: boolean): Promise<number> {
  const entry = await c.client(dfsApi).stat({ volume, path });
  if (entry.type !== 'file') throw new Error(`${volume}:${path} is a folder; give a file`);
  const partial = `${local}.part`;
  const partOf = `${partial}.json`;
  // Resumed only if it is the start of this very version of this file: joined to the rest of any other, it would be
  // neither.
  const saved = readPartOf(partOf);
  const resume =
    saved && saved.volume === volume && saved.path === path && saved.content_id === entry.content_id && existsSync(partial) && statSync(partial).size <= entry.size
      ? saved
      : null;
  let done = resume ? statSync(partial).size : 0;
  let sum = createHash('sha256');
  // Hashed before asking for the rest, not while the answer waits: the server closes a connection idle for 120 s.
  if (done > 0) for await (const b of createReadStream(partial)) sum.update(b as Buffer);
  let id = resume?.content_id;
  let total = entry.size;
  if (!resume || done < entry.size) {
    const headers: Record<string, string> = resume && done > 0 ? { range: `bytes=${done}-`, 'if-range': `"${resume.content_id}"` } : {};
    const r = await httpCall(c, 'GET', `/kapi/dfs/files/${volume}${encodePath(path)}`, { headers });
    if (r.status !== 200 && r.status !== 206) await failure(r);
    id = /^"(sha256:[0-9a-f]{64})"$/.exec(String(r.headers.etag))?.[1];
    if (!id) {
      r.stream.destroy();
      throw new Error(`${volume}:${path}: the server's answer names no content id (ETag), so the download cannot be checked`);
    }
    if (r.status === 200) {
      // The whole file, perhaps a version newer than the part: start over, the part gone before the record changes.
      done = 0;
      sum = createHash('sha256');
      rmSync(partial, { force: true });
      writeFileSync(partOf, JSON.stringify({ volume, path, content_id: id } satisfies PartOf));
    }
    total = r.headers['content-length'] === undefined ? entry.size : done + Number(r.headers['content-length']);
    const bar = new Progress(`get ${basename(path)}`, total, progress);
    const hashing = async function* (src: AsyncIterable<Buffer>) {
      for await (const b of src) {
        sum.update(b);
        done += b.length;
        bar.update(done);
        yield b;
      }
    };
    try {
      await pipe(r.stream, hashing, createWriteStream(partial, { flags: done > 0 ? 'a' : 'w' }));
    } catch (err) {
      bar.done();
      throw new Error(`download stopped at ${done} of ${total} bytes (${(err as Error).message}); run the same command again to resume`);
    }
    bar.done();
    if (done !== total) throw new Error(`download stopped at ${done} of ${total} bytes; run the same command again to resume`);
  }
  const got = `sha256:${sum.digest('hex')}`;
  if (got !== id) {
    rmSync(partial, { force: true });
    rmSync(partOf, { force: true });
    throw new Error(`the bytes downloaded hash to ${got}, not ${id} as ${volume}:${path} said: deleted them; run the same command again to download it afresh`);
  }
  renameSync(partial, local);
  rmSync(partOf, { force: true });
  return total;
}

async function walkSize(c: CliContext, volume: string, path: string): Promise<{ bytes: number; files: number; dirs: number }> {
  const dfs = c.client(dfsApi);
  const total = { bytes: 0, files: 0, dirs: 0 };
  const queue = [path];
  while (queue.length > 0) {
    const dir = queue.shift()!;
    for (const e of (await dfs.list({ volume, path: dir })).entries) {
      if (e.type === 'dir') {
        total.dirs++;
        queue.push(e.path);
      } else {
        total.files++;
        total.bytes += e.size;
      }
    }
  }
  return total;
}

export function registerFs(program: Command): void {
  const fs = program
    .command('fs')
    .description("the zone's files (dcfs-lite): <volume>:<path>")
    .option('--volume <name>', 'volume for paths given without one', 'home');
  const ctx = (cmd: Command) => new CliContext(cmd.optsWithGlobals());
  const opts = (cmd: Command) => cmd.optsWithGlobals() as FsOpts;
  const showProgress = (o: FsOpts) => o.progress ?? process.stderr.isTTY === true;

  fs.command('ls [target]')
    .description('list a folder')
    .option('--json', 'machine-readable output')
    .action(async (target: string | undefined, _o: unknown, cmd: Command) => {
      const o = opts(cmd);
      const t = parseTarget(target ?? '/', o.volume);
      const dfs = ctx(cmd).client(dfsApi);
      const entry = await dfs.stat(t);
      const entries = entry.type === 'dir' ? (await dfs.list(t)).entries : [entry];
      if (o.json) console.log(JSON.stringify(entries, null, 2));
      else printEntries(entries);
    });

  fs.command('put <local> <target>')
    .description('upload a file (or, with -r, a folder), resuming after a broken connection; a progress bar on a terminal')
    .option('-r, --recursive', 'upload a folder and everything in it')
    .option('--progress', 'show progress even when not on a terminal')
    .action(async (local: string, target: string, o2: { recursive?: boolean; progress?: boolean }, cmd: Command) => {
      const o = { ...opts(cmd), ...o2 };
      const c = ctx(cmd);
      const t = parseTarget(target, o.volume);
      const st = statSync(local);
      if (!st.isDirectory()) {
        const dest = t.path.endsWith('/') ? `${t.path}${basename(local)}` : t.path;
        const e = await put(c, local, t.volume, dest, showProgress(o));
        console.log(`${t.volume}:${e.path} ${human(e.size)} ${e.content_id}`);
        return;
      }
      if (!o.recursive) throw new Error(`${local} is a folder: use -r`);
      const { readdirSync } = await import('node:fs');
      const dfs = c.client(dfsApi);
      const walk = async (dir: string, remote: string): Promise<number> => {
        await dfs.mkdir({ volume: t.volume, path: remote, parents: true }).catch((err: Error) => {
          if (!/ALREADY_EXISTS|already exists/.test(err.message)) throw err;
        });
        let n = 0;
        for (const d of readdirSync(dir, { withFileTypes: true })) {
          const child = `${dir}/${d.name}`;
          const r = `${remote === '/' ? '' : remote}/${d.name}`;
          if (d.isDirectory()) n += await walk(child, r);
          else if (d.isFile()) {
            await put(c, child, t.volume, r, showProgress(o));
            n++;
          }
        }
        return n;
      };
      const n = await walk(resolvePath(local), t.path);
      console.log(`uploaded ${n} files to ${t.volume}:${t.path}`);
    });

  fs.command('get <target> [local]')
    .description('download a file (into a folder given as <local>: under its own name), checked against its content id; an interrupted download of the same version resumes')
    .option('--progress', 'show progress even when not on a terminal')
    .action(async (target: string, local: string | undefined, o2: { progress?: boolean }, cmd: Command) => {
      const o = { ...opts(cmd), ...o2 };
      const t = parseTarget(target, o.volume);
      const intoDir = local !== undefined && (local.endsWith('/') || (existsSync(local) && statSync(local).isDirectory()));
      const dest = local === undefined ? basename(t.path) : intoDir ? join(local, basename(t.path)) : local;
      mkdirSync(dirname(resolvePath(dest)), { recursive: true });
      const n = await get(ctx(cmd), t.volume, t.path, dest, showProgress(o));
      console.log(`${dest} ${human(n)}`);
    });

  fs.command('rm <target>')
    .description('move a file or folder to the trash')
    .action(async (target: string, _o: unknown, cmd: Command) => {
      const t = parseTarget(target, opts(cmd).volume);
      const r = await ctx(cmd).client(dfsApi).delete(t);
      console.log(`moved to the trash (${r.trash_id}); \`buckyos fs restore ${t.volume} ${r.trash_id}\` brings it back`);
    });

  fs.command('mv <from> <to>')
    .description('move or rename within a volume')
    .option('-f, --force', 'replace what is at the destination')
    .action(async (from: string, to: string, o2: { force?: boolean }, cmd: Command) => {
      const a = parseTarget(from, opts(cmd).volume);
      const b = parseTarget(to, a.volume);
      if (a.volume !== b.volume) throw new Error('mv works within one volume; copy with get and put across volumes');
      const e = await ctx(cmd).client(dfsApi).rename({ volume: a.volume, from: a.path, to: b.path, overwrite: o2.force === true });
      console.log(`${a.volume}:${e.path}`);
    });

  fs.command('cp <from> <to>')
    .description('copy within a volume, by reference (no data is copied)')
    .action(async (from: string, to: string, _o: unknown, cmd: Command) => {
      const a = parseTarget(from, opts(cmd).volume);
      const b = parseTarget(to, a.volume);
      if (a.volume !== b.volume) throw new Error('cp works within one volume; copy with get and put across volumes');
      const e = await ctx(cmd).client(dfsApi).copy({ volume: a.volume, from: a.path, to: b.path });
      console.log(`${a.volume}:${e.path}`);
    });

  fs.command('mkdir <target>')
    .option('-p, --parents', 'create missing parents')
    .action(async (target: string, o2: { parents?: boolean }, cmd: Command) => {
      const t = parseTarget(target, opts(cmd).volume);
      await ctx(cmd).client(dfsApi).mkdir({ ...t, parents: o2.parents === true });
    });

  fs.command('du [target]')
    .description('bytes and files under a folder, and your usage and quota')
    .option('--json', 'machine-readable output')
    .action(async (target: string | undefined, o2: { json?: boolean }, cmd: Command) => {
      const c = ctx(cmd);
      const t = parseTarget(target ?? '/', opts(cmd).volume);
      const total = await walkSize(c, t.volume, t.path);
      const usage = await c.client(dfsApi).usage({ volume: t.volume });
      if (o2.json) console.log(JSON.stringify({ ...total, usage }, null, 2));
      else {
        console.log(`${human(total.bytes)} in ${total.files} files and ${total.dirs} folders under ${t.volume}:${t.path}`);
        console.log(`usage of ${usage.user}: ${human(usage.used_bytes)}${usage.quota_bytes === null ? '' : ` of ${human(usage.quota_bytes)}`}`);
      }
    });

  fs.command('trash <volume>')
    .description("what is in a volume's trash")
    .action(async (volume: string, _o: unknown, cmd: Command) => {
      for (const i of (await ctx(cmd).client(dfsApi).trash_list({ volume })).items) {
        console.log(`${i.trash_id}  ${new Date(i.deleted_at).toISOString()}  ${i.deleted_by.padEnd(12)} ${i.path}${i.type === 'dir' ? '/' : ''}`);
      }
    });

  fs.command('restore <volume> <trash_id>')
    .option('--to <path>', 'restore to another place')
    .action(async (volume: string, trashId: string, o2: { to?: string }, cmd: Command) => {
      const e = await ctx(cmd).client(dfsApi).restore({ volume, trash_id: trashId, to: o2.to });
      console.log(`${volume}:${e.path}`);
    });

  fs.command('versions <target>')
    .description('kept versions of a file')
    .action(async (target: string, _o: unknown, cmd: Command) => {
      const t = parseTarget(target, opts(cmd).volume);
      for (const v of (await ctx(cmd).client(dfsApi).versions(t)).versions) {
        console.log(`${v.version_id}  ${new Date(v.mtime).toISOString()}  ${human(v.size).padStart(10)}  ${v.author.padEnd(12)} ${v.content_id}`);
      }
    });

  fs.command('quota <volume> <user> <bytes>')
    .description('set a user\'s quota on a volume ("none" lifts it); bytes may end in K, M, G or T')
    .action(async (volume: string, user: string, bytes: string, _o: unknown, cmd: Command) => {
      const m = /^([0-9]+)([KMGT]?)$/i.exec(bytes);
      if (bytes !== 'none' && !m) throw new Error('bytes: a number, optionally ending in K, M, G or T, or "none"');
      const quota = bytes === 'none' ? null : Number(m![1]) * 1024 ** ['', 'K', 'M', 'G', 'T'].indexOf(m![2]!.toUpperCase());
      const r = await ctx(cmd).client(dfsApi).quota_set({ volume, user, quota_bytes: quota });
      console.log(`${user} on ${volume}: ${r.quota_bytes === null ? 'no quota' : human(r.quota_bytes)}`);
    });

  fs.command('scrub')
    .description("verify every chunk on this node's disks now (corrupt or missing ones are repaired)")
    .option('--disk <id>', 'only this disk')
    .action(async (o2: { disk?: string }, cmd: Command) => {
      const r = await ctx(cmd).client(dfsApi).scrub({ disk_id: o2.disk });
      console.log(r.started ? 'scrub started; see `buckyos fs status`' : 'a scrub is already running');
    });

  fs.command('gc')
    .description("delete chunks on this node's disks that no volume names any more, then compact half-dead packs")
    .option('--accept <volume...>', "take these volumes' metadata as it is now, after a round skipped because it was made anew or went back")
    .action(async (o2: { accept?: string[] }, cmd: Command) => {
      const r = await ctx(cmd).client(dfsApi).gc(o2.accept ? { accept: o2.accept } : {});
      console.log(r.started ? 'chunk collection started; see `buckyos fs status`' : 'a collection round is already running');
    });

  fs.command('status')
    .description('disks of every node, volumes, chunks below their policy, scrub and chunk collection progress')
    .option('--json', 'machine-readable output')
    .option('--node <name>', "ask that node's dfs: volume roles, log positions and scrub are each node's own")
    .action(async (o2: { json?: boolean; node?: string }, cmd: Command) => {
      const s = await ctx(cmd).client(dfsApi, o2.node ? { node: o2.node } : {}).status({});
      if (o2.json) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log('NODE         DISK         STATE        CHUNKS      USED       FREE  ERRORS r/w/corrupt  REPAIRS  LAST SCRUB');
      for (const d of s.disks) {
        console.log(
          `${d.node.padEnd(12)} ${d.disk_id.padEnd(12)} ${d.state.padEnd(12)} ${String(d.chunks).padStart(6)} ${human(d.bytes).padStart(9)} ${human(d.free_bytes).padStart(10)}  ${`${d.errors.read}/${d.errors.write}/${d.errors.corrupt}`.padStart(18)}  ${String(d.repairs).padStart(7)}  ${d.last_scrub_at ? new Date(d.last_scrub_at).toISOString() : 'never'}`,
        );
      }
      for (const v of s.volumes) {
        const synced = v.synced_at ? `last synced ${new Date(v.synced_at).toISOString()}` : 'never synced';
        const follower = v.role === 'follower' ? `; ${synced}${v.sync_error ? `; last sync failed: ${v.sync_error}` : ''}` : '';
        const kept = v.log_start > 0 ? ` (log kept from ${v.log_start + 1})` : '';
        console.log(`volume ${v.name}: ${v.role} at log ${v.last_seq}${kept}${v.lag === null ? '' : `, ${v.lag} behind`}${follower}`);
      }
      console.log(`chunks below their policy: ${s.under_replicated}   copies moved to even out disks: ${s.rebalanced}`);
      const sc = s.scrub;
      console.log(`scrub: ${sc.running ? 'running' : 'idle'}; checked ${sc.checked}, corrupt ${sc.corrupt}, missing ${sc.missing}, repaired ${sc.repaired}`);
      if (s.gc) {
        const g = s.gc;
        const last = g.last_at === null ? 'no round yet' : `last round ${new Date(g.last_at).toISOString()}: ${g.last_outcome}${g.last_reason ? ` (${g.last_reason})` : ''}`;
        console.log(`chunk collection on ${s.node}: ${g.running ? 'running' : 'idle'}; ${last}; ${g.live_chunks} chunks live`);
        for (const [id, t] of Object.entries(g.disks)) {
          console.log(`  ${id}: ${t.chunks} chunks (${human(t.bytes)}) deleted, ${human(t.compacted_bytes)} given back by compaction${t.last_error ? `; last round stopped short: ${t.last_error}` : ''}`);
        }
      }
    });

  const disk = fs.command('disk').description('disks of storage nodes (storage/disks/<node>/<disk>)');
  disk
    .command('add <path>')
    .description('register a directory on a disk of a node as dfs storage')
    .option('--id <id>', 'disk id (default: from the directory name)')
    .option('--node <name>', 'the node it is on (default: this device)')
    .action(async (path: string, o2: { id?: string; node?: string }, cmd: Command) => {
      const c = ctx(cmd);
      const node = o2.node ?? (await loadNodeIdentity(c.paths.etc)).device.name;
      const abs = resolvePath(path);
      const here = o2.node === undefined;
      if (here) {
        // What only this device can check; another node's dfs reports a bad path in `buckyos fs status`.
        if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new Error(`${abs} is not a directory on ${hostname()}`);
        accessSync(abs, constants.W_OK);
      }
      const id = o2.id ?? basename(abs).toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 32);
      if (!DISK_ID.test(id)) throw new Error(`cannot make a disk id from "${basename(abs)}": give --id`);
      const config = c.client(systemConfigApi);
      const existing = await config.list({ prefix: 'storage/disks/', limit: 10_000 });
      for (const e of existing.entries) {
        const other = JSON.parse(e.value) as { path?: string };
        const [, , n, d] = e.key.split('/');
        if (n === node && d === id) throw new Error(`${node} already has a disk ${id} (${other.path})`);
        if (n === node && other.path && (abs === other.path || abs.startsWith(`${other.path}/`) || other.path.startsWith(`${abs}/`))) {
          throw new Error(`${abs} overlaps disk ${d} (${other.path}) on ${node}`);
        }
      }
      const record = diskRecordSchema.parse({ path: abs, state: 'active', added_at: Date.now() });
      await config.create({ key: diskKey(node, id), value: JSON.stringify(record) });
      console.log(`disk ${id} on ${node}: ${abs}`);
    });
  disk
    .command('ls')
    .action(async (_o: unknown, cmd: Command) => {
      for (const e of (await ctx(cmd).client(systemConfigApi).list({ prefix: 'storage/disks/', limit: 10_000 })).entries) {
        const [, , node, id] = e.key.split('/');
        const r = JSON.parse(e.value) as { path: string; state: string };
        console.log(`${node!.padEnd(12)} ${id!.padEnd(12)} ${r.state.padEnd(9)} ${r.path}`);
      }
    });
  disk
    .command('rm <id>')
    .description('drain a disk (its chunks are copied elsewhere first), or forget a drained one; --force forgets it at once')
    .option('--node <name>', 'the node it is on (default: this device)')
    .option('--force', 'forget it now, without draining (for a dead disk: copies that exist nowhere else are lost)')
    .action(async (id: string, o2: { node?: string; force?: boolean }, cmd: Command) => {
      const c = ctx(cmd);
      const node = o2.node ?? (await loadNodeIdentity(c.paths.etc)).device.name;
      const config = c.client(systemConfigApi);
      const cur = await config.get({ key: diskKey(node, id) });
      if (cur.value === null) throw new Error(`${node} has no disk ${id}`);
      if (o2.force) {
        await config.delete({ key: diskKey(node, id) });
        console.log(`disk ${id} on ${node} forgotten`);
        return;
      }
      const r = diskRecordSchema.parse(JSON.parse(cur.value));
      if (r.state === 'draining') {
        // Forgotten only once it holds nothing: a copy still there may be the last one a volume has.
        const held = (await c.client(dfsApi).status({})).disks.find((d) => d.node === node && d.disk_id === id);
        if (!held || held.state === 'unreachable') throw new Error(`disk ${id} on ${node} is draining, but its node does not report it now, so whether it still holds chunks is unknown; try again when it does, or pass --force`);
        if (held.chunks > 0) {
          throw new Error(
            `disk ${id} on ${node} is draining and still holds ${held.chunks} chunks: the copies volumes name leave it within a pass or two (30 s each) once they have their copies elsewhere, unreferenced ones with chunk collection; run this again when \`buckyos fs status\` shows 0, or pass --force`,
          );
        }
        await config.delete({ key: diskKey(node, id), expect_revision: cur.revision });
        console.log(`disk ${id} on ${node} is empty and forgotten`);
        return;
      }
      await config.set({ key: diskKey(node, id), value: JSON.stringify({ ...r, state: 'draining' }), expect_revision: cur.revision });
      console.log(`disk ${id} on ${node} is draining; run this again to forget it once \`buckyos fs status\` shows it holds nothing`);
    });

  const volume = fs.command('volume').description('volumes (storage/volumes/<name>)');
  /** Refuses nodes that are not devices of the zone: a volume record naming one would hold its metadata nowhere. */
  const mustBeDevices = async (config: { get(p: { key: string }): Promise<{ value: string | null }> }, nodes: readonly string[]) => {
    for (const n of nodes) if ((await config.get({ key: `devices/${n}/doc` })).value === null) throw new Error(`no device ${n} in the zone`);
  };
  const policyOf = (o: { copies: string; domain: string }) => placementPolicySchema.parse({ copies: Number(o.copies), failure_domain: o.domain });
  volume
    .command('create <name>')
    .option('--copies <n>', 'durable copies of every chunk', '2')
    .option('--domain <d>', 'what copies must not share: disk or node', 'node')
    .option('--primary <node>', 'where the metadata lives (default: this device)')
    .option('--followers <nodes>', 'comma-separated nodes keeping a copy of the metadata')
    .option('--keep-versions <n>', 'versions kept per file', '10')
    .action(async (name: string, o2: { copies: string; domain: string; primary?: string; followers?: string; keepVersions: string }, cmd: Command) => {
      const c = ctx(cmd);
      const primary = o2.primary ?? (await loadNodeIdentity(c.paths.etc)).device.name;
      const record: VolumeRecord = volumeRecordSchema.parse({
        primary,
        followers: o2.followers ? o2.followers.split(',').map((s) => s.trim()).filter(Boolean) : [],
        policy: policyOf(o2),
        keep_versions: Number(o2.keepVersions),
        created_at: Date.now(),
      });
      const config = c.client(systemConfigApi);
      await mustBeDevices(config, [record.primary, ...record.followers]);
      const disks = (await config.list({ prefix: 'storage/disks/', limit: 10_000 })).entries.map((e) => e.key.split('/'));
      const domains = new Set(disks.map(([, , n, d]) => (record.policy.failure_domain === 'node' ? n : `${n}/${d}`))).size;
      if (domains < record.policy.copies) {
        throw new Error(`${record.policy.copies} copies on different ${record.policy.failure_domain}s need that many; the zone has ${domains} (add disks with \`buckyos fs disk add\`)`);
      }
      await config.create({ key: volumeKey(name), value: JSON.stringify(record) });
      console.log(`volume ${name}: metadata on ${primary}${record.followers.length ? `, followers ${record.followers.join(', ')}` : ''}; ${record.policy.copies} copies across ${record.policy.failure_domain}s`);
    });
  volume.command('ls').action(async (_o: unknown, cmd: Command) => {
    for (const e of (await ctx(cmd).client(systemConfigApi).list({ prefix: 'storage/volumes/', limit: 10_000 })).entries) {
      const v = JSON.parse(e.value) as VolumeRecord;
      console.log(`${e.key.split('/')[2]!.padEnd(16)} primary ${v.primary}  followers ${v.followers.join(',') || '-'}  ${v.policy.copies} copies / ${v.policy.failure_domain}`);
    }
  });
  volume
    .command('policy <name>')
    .description('set the placement policy of a volume or of one of its folders')
    .option('--folder <path>', 'a folder with its own policy')
    .option('--copies <n>', 'durable copies', '2')
    .option('--domain <d>', 'disk or node', 'node')
    .action(async (name: string, o2: { folder?: string; copies: string; domain: string }, cmd: Command) => {
      const config = ctx(cmd).client(systemConfigApi);
      const cur = await config.get({ key: volumeKey(name) });
      if (cur.value === null) throw new Error(`no volume ${name}`);
      const v = volumeRecordSchema.parse(JSON.parse(cur.value));
      const policy = policyOf(o2);
      const next = o2.folder ? { ...v, folders: { ...v.folders, [o2.folder]: policy } } : { ...v, policy };
      await config.set({ key: volumeKey(name), value: JSON.stringify(volumeRecordSchema.parse(next)), expect_revision: cur.revision });
      console.log(`${name}${o2.folder ?? ''}: ${policy.copies} copies across ${policy.failure_domain}s`);
    });
  volume
    .command('followers <name> [nodes...]')
    .description('set the nodes that keep a copy of the metadata (none: no follower)')
    .action(async (name: string, nodes: string[], _o: unknown, cmd: Command) => {
      const config = ctx(cmd).client(systemConfigApi);
      const cur = await config.get({ key: volumeKey(name) });
      if (cur.value === null) throw new Error(`no volume ${name}`);
      const next = withFollowers(volumeRecordSchema.parse(JSON.parse(cur.value)), nodes);
      await mustBeDevices(config, nodes);
      await config.set({ key: volumeKey(name), value: JSON.stringify(next), expect_revision: cur.revision });
      console.log(`volume ${name}: followers ${next.followers.join(', ') || '-'}`);
    });
  volume
    .command('promote <name> <node>')
    .description("make a follower the volume's primary, once the primary is lost for good")
    .option('--force', 'promote although the primary still answers, another follower has followed further, or the follower holds nothing yet')
    .action(async (name: string, node: string, o2: { force?: boolean }, cmd: Command) => {
      const c = ctx(cmd);
      const config = c.client(systemConfigApi);
      const cur = await config.get({ key: volumeKey(name) });
      if (cur.value === null) throw new Error(`no volume ${name}`);
      const v = volumeRecordSchema.parse(JSON.parse(cur.value));
      const next = promoteFollower(v, node);
      /** What a node's dfs says of the volume, or why it does not answer. */
      const held = async (n: string) => {
        try {
          const s = await c.client(dfsApi, { node: n, timeoutMs: 10_000 }).status({});
          const none: DfsVolumeStatus = { name, role: 'none', last_seq: 0, log_start: 0, lag: null, synced_at: null, sync_error: null };
          return s.volumes.find((x) => x.name === name) ?? none;
        } catch (err) {
          return { error: (err as Error).message };
        }
      };
      // Gone for good: its dfs does not answer, and the scheduler has counted it dead (no heartbeat for 90 s), so a
      // passing network fault is not taken for a lost device.
      const old = await held(v.primary);
      if (!o2.force) {
        if (!('error' in old)) {
          throw new Error(`the primary ${v.primary} still answers (log seq ${old.last_seq}): promoting ${node} now would lose what ${v.primary} has not shipped yet. Promote once ${v.primary} is gone for good, or pass --force`);
        }
        const info = serviceInfoSchema.safeParse(JSON.parse((await config.get({ key: 'services/dfs/info' })).value ?? 'null'));
        if (!info.success || info.data.instances.some((i) => i.node === v.primary && i.state !== 'dead')) {
          throw new Error(`the primary ${v.primary} does not answer (${old.error}), but the zone does not count its dfs dead yet (that takes 90 s without a heartbeat): try again then, or pass --force`);
        }
      }
      const cand = await held(node);
      if ('error' in cand) throw new Error(`${node} does not answer (${cand.error}); it must be running to take over`);
      const refusal = promotionRefusal(node, cand, o2.force === true);
      if (refusal) throw new Error(refusal);
      for (const f of next.followers) {
        const other = await held(f);
        if (!('error' in other) && other.last_seq > cand.last_seq && !o2.force) {
          throw new Error(`${f} has followed further (log seq ${other.last_seq}, ${node} ${cand.last_seq}): promote ${f} instead, or pass --force`);
        }
      }
      await config.set({ key: volumeKey(name), value: JSON.stringify(next), expect_revision: cur.revision });
      console.log(`volume ${name}: metadata now on ${node} (log seq ${cand.last_seq}); ${v.primary} has left the volume${'error' in old ? ` (it does not answer: ${old.error})` : ''}`);
      if (cand.lag) console.log(`  ${node} was ${cand.lag} log entries behind the last it heard of ${v.primary}: those changes are lost with it`);
      console.log(`  chunk collection waits for \`buckyos fs gc --accept ${name}\` (the metadata's copy changed)`);
      console.log(`  ${v.primary}, if it comes back, can follow again: \`buckyos fs volume followers ${name} ${[...next.followers, v.primary].join(' ')}\``);
    });
}
