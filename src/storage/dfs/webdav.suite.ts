// A DavBackend over a real temporary directory, for the WebDAV tests and the litmus run: files and directories on
// disk, dead properties and content types in a JSON file beside them, an optional byte quota. Real enough for litmus;
// not the dfs storage (that backend is built over the chunk store and the volume metadata).
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, type BigIntStats } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DavBackendError, type DavBackend, type DavEntry, type DavQuota, type DavRange } from './webdav.ts';

interface Meta {
  props: Record<string, Record<string, string>>;
  types: Record<string, string>;
}

export interface DiskDavBackendOptions {
  /** Bytes all files together may hold; past it writes and copies fail with QUOTA_EXCEEDED. */
  quotaBytes?: number;
  /** Bytes one resource's dead properties (keys and values) may hold; past it patchProps fails whole. */
  maxPropBytes?: number;
}

const within = (path: string, root: string) => root === '/' || path === root || path.startsWith(root + '/');
const parentOf = (path: string) => path.slice(0, path.lastIndexOf('/')) || '/';

export class DiskDavBackend implements DavBackend {
  private readonly data: string;
  private readonly metaFile: string;
  private readonly meta: Meta = { props: {}, types: {} };

  private constructor(
    readonly root: string,
    private readonly opts: DiskDavBackendOptions,
  ) {
    this.data = join(root, 'data');
    this.metaFile = join(root, 'meta.json');
  }

  static async create(opts: DiskDavBackendOptions = {}): Promise<DiskDavBackend> {
    const root = await mkdtemp(join(tmpdir(), 'webdav-'));
    await mkdir(join(root, 'data'));
    return new DiskDavBackend(root, opts);
  }

  async destroy(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  private fsPath(path: string): string {
    const segments = path.split('/').slice(1);
    if (!path.startsWith('/') || (path !== '/' && segments.some((s) => s === '' || s === '.' || s === '..'))) {
      throw new DavBackendError('INVALID_PATH', `invalid path ${path}`);
    }
    return path === '/' ? this.data : join(this.data, ...segments);
  }

  private entry(path: string, st: BigIntStats): DavEntry {
    return {
      path,
      type: st.isDirectory() ? 'dir' : 'file',
      size: st.isDirectory() ? 0 : Number(st.size),
      mtime: Number(st.mtimeMs),
      created: Number(st.birthtimeMs) || Number(st.ctimeMs),
      etag: `${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}`,
      contentType: this.meta.types[path],
    };
  }

  async stat(path: string): Promise<DavEntry | null> {
    try {
      return this.entry(path, await stat(this.fsPath(path), { bigint: true }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw err;
    }
  }

  private async existing(path: string): Promise<DavEntry> {
    const e = await this.stat(path);
    if (!e) throw new DavBackendError('NOT_FOUND', `${path} does not exist`);
    return e;
  }

  /** Checks that `path` could be created: its parent is an existing directory. */
  private async parentReady(path: string): Promise<void> {
    const parent = await this.stat(parentOf(path));
    if (!parent) throw new DavBackendError('NOT_FOUND_PARENT', `parent collection ${parentOf(path)} does not exist`);
    if (parent.type !== 'dir') throw new DavBackendError('NOT_A_DIRECTORY', `${parentOf(path)} is not a collection`);
  }

  async list(path: string): Promise<DavEntry[]> {
    const dir = await this.existing(path);
    if (dir.type !== 'dir') throw new DavBackendError('NOT_A_DIRECTORY', `${path} is not a collection`);
    const out: DavEntry[] = [];
    for (const name of await readdir(this.fsPath(path))) {
      const child = path === '/' ? `/${name}` : `${path}/${name}`;
      const e = await this.stat(child);
      if (e) out.push(e);
    }
    return out;
  }

  async read(path: string, range?: DavRange): Promise<Readable> {
    const e = await this.existing(path);
    if (e.type === 'dir') throw new DavBackendError('IS_A_DIRECTORY', `${path} is a collection`);
    return createReadStream(this.fsPath(path), range ? { start: range.start, end: range.end } : {});
  }

  private async usage(dir = this.data): Promise<number> {
    let total = 0;
    for (const d of await readdir(dir, { withFileTypes: true })) {
      total += d.isDirectory() ? await this.usage(join(dir, d.name)) : (await stat(join(dir, d.name))).size;
    }
    return total;
  }

  async quota(): Promise<DavQuota | null> {
    if (this.opts.quotaBytes === undefined) return null;
    const used = await this.usage();
    return { usedBytes: used, availableBytes: Math.max(0, this.opts.quotaBytes - used) };
  }

  private quotaError(): DavBackendError {
    return new DavBackendError('QUOTA_EXCEEDED', `the volume's quota of ${this.opts.quotaBytes} bytes is used up`);
  }

  async write(path: string, body: Readable, opts: { contentType?: string; expectedSize?: number }): Promise<{ created: boolean; entry: DavEntry }> {
    await this.parentReady(path);
    const before = await this.stat(path);
    if (before?.type === 'dir') throw new DavBackendError('IS_A_DIRECTORY', `${path} is a collection`);
    const limit = this.opts.quotaBytes;
    const room = limit === undefined ? Infinity : limit - (await this.usage()) + (before?.size ?? 0);
    if ((opts.expectedSize ?? 0) > room) throw this.quotaError();
    let written = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        written += chunk.length;
        cb(written > room ? this.quotaError() : null, chunk);
      },
    });
    const tmp = join(this.root, `upload-${randomUUID()}`);
    const out = createWriteStream(tmp);
    try {
      await pipeline(body, counter, out);
      await rename(tmp, this.fsPath(path));
    } catch (err) {
      // A body that failed at once (its client already gone) rejects the pipeline while the file is still being
      // opened: removed before the open completes, it would be created after the removal and left behind.
      if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
      await rm(tmp, { force: true });
      throw err;
    }
    if (opts.contentType) this.meta.types[path] = opts.contentType;
    else delete this.meta.types[path];
    if (!before) delete this.meta.props[path];
    await this.save();
    return { created: !before, entry: await this.existing(path) };
  }

  async mkdir(path: string): Promise<void> {
    if (await this.stat(path)) throw new DavBackendError('EXISTS', `${path} already exists`);
    await this.parentReady(path);
    await mkdir(this.fsPath(path));
  }

  async remove(path: string): Promise<void> {
    await this.existing(path);
    if (path === '/') throw new DavBackendError('FORBIDDEN', 'the root cannot be removed');
    await rm(this.fsPath(path), { recursive: true });
    this.dropMeta(path);
    await this.save();
  }

  /** Checks a COPY/MOVE destination and clears it when it may be overwritten; true when it did not exist. */
  private async prepareDestination(from: string, to: string, overwrite: boolean): Promise<boolean> {
    if (from === to || within(to, from)) throw new DavBackendError('CONFLICT', `${to} is inside ${from}`);
    await this.parentReady(to);
    const dest = await this.stat(to);
    if (dest && !overwrite) throw new DavBackendError('EXISTS', `${to} already exists`);
    if (dest) {
      await rm(this.fsPath(to), { recursive: true });
      this.dropMeta(to);
    }
    return !dest;
  }

  async move(from: string, to: string, opts: { overwrite: boolean }): Promise<{ created: boolean }> {
    await this.existing(from);
    const created = await this.prepareDestination(from, to, opts.overwrite);
    await rename(this.fsPath(from), this.fsPath(to));
    this.copyMeta(from, to, 'infinity');
    this.dropMeta(from);
    await this.save();
    return { created };
  }

  async copy(from: string, to: string, opts: { overwrite: boolean; depth: 0 | 'infinity' }): Promise<{ created: boolean }> {
    const src = await this.existing(from);
    if (this.opts.quotaBytes !== undefined && src.type === 'file' && (await this.usage()) + src.size > this.opts.quotaBytes) throw this.quotaError();
    const created = await this.prepareDestination(from, to, opts.overwrite);
    if (src.type === 'file') await copyFile(this.fsPath(from), this.fsPath(to));
    else if (opts.depth === 0) await mkdir(this.fsPath(to));
    else await cp(this.fsPath(from), this.fsPath(to), { recursive: true });
    this.copyMeta(from, to, src.type === 'dir' ? opts.depth : 0);
    await this.save();
    return { created };
  }

  async getProps(path: string): Promise<Record<string, string>> {
    await this.existing(path);
    return { ...this.meta.props[path] };
  }

  async patchProps(path: string, set: Record<string, string>, remove: string[]): Promise<void> {
    await this.existing(path);
    const next = { ...this.meta.props[path], ...set };
    for (const k of remove) delete next[k];
    const bytes = Object.entries(next).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    if (this.opts.maxPropBytes !== undefined && bytes > this.opts.maxPropBytes) {
      throw new DavBackendError('QUOTA_EXCEEDED', `dead properties would take ${bytes} bytes, at most ${this.opts.maxPropBytes}`);
    }
    this.meta.props[path] = next;
    await this.save();
  }

  private dropMeta(path: string): void {
    for (const table of [this.meta.props, this.meta.types]) for (const k of Object.keys(table)) if (within(k, path)) delete table[k];
  }

  private copyMeta(from: string, to: string, depth: 0 | 'infinity'): void {
    for (const table of [this.meta.props, this.meta.types] as Array<Record<string, unknown>>) {
      for (const [k, v] of Object.entries(table)) {
        if (k === from || (depth === 'infinity' && within(k, from))) table[to + k.slice(from.length)] = structuredClone(v);
      }
    }
  }

  private async save(): Promise<void> {
    await writeFile(this.metaFile, JSON.stringify(this.meta));
  }
}
