// The dfs kRPC methods (src/lib/api/dfs.ts) on this node: file operations run where the volume's metadata is (its
// primary; a follower serves reads while cut off from it), and a call that reached another node is passed on to the
// primary with the caller's own token, so permissions are checked once, as the caller.
import { type Client, createClient, type CallContext, KrpcError, type Principal, createKrpcEndpoint, isCoreKernel, type KrpcEndpoint } from '../../lib/krpc/index.ts';
import { SEARCH_MAX_VISITED, type DfsEntry, dfsApi, uploadCommitTimeoutMs } from '../../lib/api/dfs.ts';
import type { Logger } from '../../lib/log/logger.ts';
import { ElsewhereError, type Files, apiEntry, toKrpcError } from './files.ts';
import { type Uploads, uploadVolume } from './uploads.ts';
import type { ZoneStorage } from './zone-view.ts';
import type { DiskSet } from './disks.ts';
import type { VolumeSet } from './volumes.ts';
import type { Scrubber } from './scrub.ts';
import type { Collector } from './gc.ts';
import type { TrashItem, VolumeMeta } from './volume-meta.ts';

export interface ServiceDeps {
  self: string;
  gatewayUrl: string;
  files: Files;
  uploads: Uploads;
  disks: DiskSet;
  volumes: VolumeSet;
  zone: () => ZoneStorage;
  scrubber: Scrubber;
  collector: Collector;
  authenticate(token: string): Promise<Principal>;
  roleOf(user: string): Promise<string | undefined>;
  log: Logger;
}

type Api = typeof dfsApi.methods;

/** Methods a follower may answer alone when the primary is out of reach. */
const READS: ReadonlySet<keyof Api> = new Set<keyof Api>(['list', 'stat', 'search', 'versions', 'trash_list', 'usage']);
type Params<K extends keyof Api> = Parameters<Parameters<typeof createKrpcEndpoint<Api>>[1][K]>[0];

function who(ctx: CallContext): Principal {
  if (!ctx.principal) throw new KrpcError('UNAUTHENTICATED', 'files need a token');
  return ctx.principal;
}

/** A trash item of the volume whose metadata is `meta`, or NOT_FOUND. */
function trashItem(meta: VolumeMeta, volume: string, trashId: string): TrashItem {
  const item = meta.trashItem(trashId);
  if (!item) throw new KrpcError('NOT_FOUND', `no trash item ${trashId} in ${volume}`);
  return item;
}

export function createDfsEndpoint(d: ServiceDeps): KrpcEndpoint {
  const f = d.files;

  /**
   * Runs `fn` here, or, when the volume is served elsewhere, the same call there as the caller; `forwardTimeoutMs`
   * says how long to wait there when the call may take longer than an ordinary one.
   */
  async function at<K extends keyof Api, R>(
    method: K, params: Params<K>, ctx: CallContext, fn: () => Promise<R> | R, forwardTimeoutMs?: (there: Client<Api>) => Promise<number>,
  ): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ElsewhereError)) throw toKrpcError(err);
      if (err.node === d.self) throw new KrpcError('UNAVAILABLE', `this node does not hold the metadata of ${err.volume} yet`);
      const client = createClient(dfsApi, { baseUrl: d.gatewayUrl, node: err.node, token: ctx.token ?? undefined });
      const call = client[method] as unknown as (p: Params<K>, opts?: { timeoutMs?: number }) => Promise<R>;
      try {
        return await call(params, forwardTimeoutMs ? { timeoutMs: await forwardTimeoutMs(client) } : undefined);
      } catch (fwd) {
        // Cut off from the primary, a follower answers reads from its own copy of the metadata.
        const unreachable = fwd instanceof KrpcError && (fwd.code === 'UNAVAILABLE' || fwd.code === 'TIMEOUT');
        if (!unreachable || !READS.has(method) || !f.primaryUnreachable(err.volume)) throw fwd;
        return fn();
      }
    }
  }

  /** Runs an upload's call where its spool is: on the primary of the volume its id names, else passed on there. */
  function atUpload<K extends 'upload_status' | 'upload_commit' | 'upload_abort', R>(method: K, p: Params<K>, ctx: CallContext, fn: () => Promise<R> | R): Promise<R> {
    // A commit passed on stores the whole file there: wait as long as its client does, by the upload's size.
    const commitTimeout = async (there: Client<Api>) => uploadCommitTimeoutMs((await there.upload_status({ upload_id: p.upload_id })).size);
    return at(method, p, ctx, () => {
      f.writable(uploadVolume(p.upload_id));
      return fn();
    }, method === 'upload_commit' ? commitTimeout : undefined);
  }

  // Quotas and other users' usage are the zone's to manage: an admin, or the kernel of a core device, never that of a
  // storage, portable or gateway device (RBAC's device side keeps those to their own records). Scrub and chunk
  // collection are upkeep of the disks themselves, which root on any device may start.
  const isAdmin = async (p: Principal) => isCoreKernel(p) || (p.kind !== 'service' && (await d.roleOf(p.userId).catch(() => undefined)) === 'admin');
  const mayUpkeep = async (p: Principal) => p.kind === 'service' || (await isAdmin(p));

  return createKrpcEndpoint(
    dfsApi,
    {
      list: (p, ctx) =>
        at('list', p, ctx, () => {
          const path = f.path(p.path);
          f.check(who(ctx), 'read', p.volume, path);
          return { entries: f.meta(() => f.readable(p.volume).meta.list(path)).map(apiEntry) };
        }),
      stat: (p, ctx) =>
        at('stat', p, ctx, () => {
          const path = f.path(p.path);
          f.check(who(ctx), 'read', p.volume, path);
          return apiEntry(f.meta(() => f.readable(p.volume).meta.stat(path)));
        }),
      mkdir: (p, ctx) =>
        at('mkdir', p, ctx, () => {
          const path = f.path(p.path);
          const caller = who(ctx);
          const meta = f.writable(p.volume).meta;
          const missing: string[] = [];
          if (p.parents) for (let q = path; q !== '/' && !meta.tryStat(q); q = q.slice(0, q.lastIndexOf('/')) || '/') missing.unshift(q);
          else missing.push(path);
          for (const m of missing) f.check(caller, 'create', p.volume, m);
          let last = null;
          for (const m of missing) last = f.meta(() => meta.mkdir(m, caller.userId));
          const made = last ?? f.meta(() => meta.stat(path));
          // `mkdir -p` of a path that is a file is no success: nothing was made, and no folder is there.
          if (made.type !== 'dir') throw new KrpcError('ALREADY_EXISTS', `${path} exists and is a file, not a folder`, { reason: 'NOT_A_DIRECTORY' });
          return apiEntry(made);
        }),
      rename: (p, ctx) =>
        at('rename', p, ctx, () => {
          const [from, to] = [f.path(p.from), f.path(p.to)];
          const caller = who(ctx);
          const meta = f.writable(p.volume).meta;
          f.checkTransfer(caller, 'move', p.volume, from, to, { overwrite: p.overwrite });
          return apiEntry(f.meta(() => meta.rename(from, to, { user: caller.userId, overwrite: p.overwrite })).entry);
        }),
      copy: (p, ctx) =>
        at('copy', p, ctx, () => {
          const [from, to] = [f.path(p.from), f.path(p.to)];
          const caller = who(ctx);
          const meta = f.writable(p.volume).meta;
          f.checkTransfer(caller, 'copy', p.volume, from, to, { overwrite: p.overwrite });
          return apiEntry(f.meta(() => meta.copy(from, to, { user: caller.userId, overwrite: p.overwrite })).entry);
        }),
      delete: (p, ctx) =>
        at('delete', p, ctx, () => {
          const path = f.path(p.path);
          const caller = who(ctx);
          if (path === '/') throw new KrpcError('INVALID_PARAMS', 'the volume root cannot be deleted');
          f.checkRemove(caller, p.volume, path);
          return { trash_id: f.meta(() => f.writable(p.volume).meta.remove(path, caller.userId)).trash_id };
        }),
      trash_list: (p, ctx) =>
        at('trash_list', p, ctx, () => {
          const caller = who(ctx);
          const items = f.meta(() => f.readable(p.volume).meta.trashList()).filter((t) => {
            try {
              f.check(caller, 'read', p.volume, t.path);
              return true;
            } catch {
              return false;
            }
          });
          return { items: items.map((t) => ({ trash_id: t.trash_id, path: t.path, type: t.type, size: t.size, deleted_at: t.deleted_at, deleted_by: t.deleted_by })) };
        }),
      restore: (p, ctx) =>
        at('restore', p, ctx, () => {
          const caller = who(ctx);
          const meta = f.writable(p.volume).meta;
          const item = trashItem(meta, p.volume, p.trash_id);
          const to = p.to === undefined ? item.path : f.path(p.to);
          f.checkRestore(caller, p.volume, item, to);
          return apiEntry(f.meta(() => meta.restore(p.trash_id, { user: caller.userId, to: p.to === undefined ? undefined : to })));
        }),
      trash_purge: (p, ctx) =>
        at('trash_purge', p, ctx, () => {
          const caller = who(ctx);
          const meta = f.writable(p.volume).meta;
          const item = trashItem(meta, p.volume, p.trash_id);
          f.checkPurge(caller, p.volume, item);
          f.meta(() => meta.purge(p.trash_id));
          // A large folder only left the trash: its entries are deleted from now on, batch by batch.
          d.volumes.finishPurges();
          return { purged: true as const };
        }),
      search: (p, ctx) =>
        at('search', p, ctx, () => {
          const root = f.path(p.path);
          const caller = who(ctx);
          f.check(caller, 'read', p.volume, root);
          const meta = f.readable(p.volume).meta;
          if (f.meta(() => meta.stat(root)).type !== 'dir') throw new KrpcError('FAILED_PRECONDITION', `${root} is a file: search a folder`, { reason: 'NOT_A_DIRECTORY' });
          const needle = p.query.trim().normalize('NFC').toLowerCase();
          const readable = (path: string) => {
            try {
              f.check(caller, 'read', p.volume, path);
              return true;
            } catch {
              return false;
            }
          };
          const entries: DfsEntry[] = [];
          const folders = [root];
          let visited = 0;
          let truncated = false;
          walk: for (let i = 0; i < folders.length; i++) {
            for (const e of f.meta(() => meta.list(folders[i]!))) {
              if (++visited > SEARCH_MAX_VISITED) {
                truncated = true;
                break walk;
              }
              if (!readable(e.path)) continue;
              if (e.name.normalize('NFC').toLowerCase().includes(needle)) {
                if (entries.length === p.limit) {
                  truncated = true;
                  break walk;
                }
                entries.push(apiEntry(e));
              }
              if (e.type === 'dir') folders.push(e.path);
            }
          }
          return { entries, truncated };
        }),
      versions: (p, ctx) =>
        at('versions', p, ctx, () => {
          const path = f.path(p.path);
          f.check(who(ctx), 'read', p.volume, path);
          return { versions: f.meta(() => f.readable(p.volume).meta.versions(path)).map(({ chunks: _c, ...v }) => v) };
        }),
      restore_version: (p, ctx) =>
        at('restore_version', p, ctx, () => {
          const path = f.path(p.path);
          const caller = who(ctx);
          f.check(caller, 'write', p.volume, path);
          return apiEntry(f.meta(() => f.writable(p.volume).meta.restoreVersion(path, p.version_id, { user: caller.userId })).entry);
        }),
      upload_begin: (p, ctx) =>
        at('upload_begin', p, ctx, () => {
          const caller = who(ctx);
          const { v, path } = f.preflight(p.volume, p.path, caller, p.size, p.overwrite);
          const parent = path.slice(0, path.lastIndexOf('/')) || '/';
          const dir = f.meta(() => v.meta.tryStat(parent));
          if (!dir) throw new KrpcError('NOT_FOUND', `the folder ${parent} does not exist`, { reason: 'NOT_FOUND_PARENT' });
          // Refused now, not after every byte was sent: the commit could never put a file under a file.
          if (dir.type !== 'dir') throw new KrpcError('FAILED_PRECONDITION', `${parent} is a file, not a folder`, { reason: 'NOT_A_DIRECTORY' });
          const rec = d.uploads.create({ volume: p.volume, path, size: p.size, user: caller.userId, app: caller.appId, overwrite: p.overwrite });
          return { upload_id: rec.id, offset: 0, url: `/kapi/dfs/uploads/${rec.id}` };
        }),
      upload_status: (p, ctx) =>
        atUpload('upload_status', p, ctx, () => {
          const u = d.uploads.get(p.upload_id, who(ctx));
          return { offset: u.offset, size: u.size, expires_at: u.expires_at };
        }),
      upload_commit: (p, ctx) =>
        atUpload('upload_commit', p, ctx, async () => {
          const caller = who(ctx);
          const u = d.uploads.get(p.upload_id, caller);
          if (u.offset !== u.size) throw new KrpcError('FAILED_PRECONDITION', `the upload holds ${u.offset} of ${u.size} bytes; send the rest first`, { offset: u.offset });
          d.uploads.lock(p.upload_id);
          try {
            const r = await f.write(u.volume, u.path, d.uploads.read(p.upload_id), caller, {
              sizeHint: u.size, overwrite: u.overwrite, expectContentId: p.content_id,
            });
            d.uploads.drop(p.upload_id);
            return apiEntry(r.entry);
          } finally {
            d.uploads.unlock(p.upload_id);
          }
        }),
      upload_abort: (p, ctx) =>
        atUpload('upload_abort', p, ctx, () => {
          d.uploads.get(p.upload_id, who(ctx));
          // Not under a part being written or a commit: it would answer `aborted` for an upload that then completes.
          d.uploads.lock(p.upload_id);
          try {
            d.uploads.drop(p.upload_id);
          } finally {
            d.uploads.unlock(p.upload_id);
          }
          return { aborted: true as const };
        }),
      usage: (p, ctx) =>
        at('usage', p, ctx, async () => {
          const caller = who(ctx);
          const user = p.user ?? caller.userId;
          if (user !== caller.userId && !(await isAdmin(caller))) throw new KrpcError('PERMISSION_DENIED', 'another user\'s usage needs the admin role');
          const meta = f.readable(p.volume).meta;
          return { user, used_bytes: meta.usage(user), quota_bytes: meta.quota(user) };
        }),
      quota_set: (p, ctx) =>
        at('quota_set', p, ctx, async () => {
          if (!(await isAdmin(who(ctx)))) throw new KrpcError('PERMISSION_DENIED', 'setting quotas needs the admin role');
          f.meta(() => f.writable(p.volume).meta.setQuota(p.user, p.quota_bytes));
          return { user: p.user, quota_bytes: p.quota_bytes };
        }),
      status: async (_p, ctx) => {
        who(ctx);
        const z = d.zone();
        const local = new Map((await d.disks.report()).map((r) => [r.disk_id, r]));
        const disks = z.disks.map((rec) => {
          const r = rec.node === d.self ? local.get(rec.disk) : z.reported.get(rec.node)?.find((x) => x.disk_id === rec.disk);
          return {
            node: rec.node,
            disk_id: rec.disk,
            path: rec.record.path,
            state: !r || r.state === 'unreachable' || (rec.node !== d.self && !z.live.has(rec.node)) ? ('unreachable' as const) : rec.record.state,
            chunks: r?.chunks ?? 0,
            bytes: r?.bytes ?? 0,
            capacity_bytes: r?.capacity_bytes ?? 0,
            free_bytes: r?.free_bytes ?? 0,
            errors: r?.errors ?? { read: 0, write: 0, corrupt: 0 },
            repairs: r?.repairs ?? 0,
            last_scrub_at: r?.last_scrub_at ?? null,
          };
        });
        const volumes = [...z.volumes.keys()].sort().map((name) => {
          const held = d.volumes.get(name);
          return {
            name,
            role: held?.role ?? ('none' as const),
            last_seq: held?.meta.lastSeq ?? 0,
            log_start: held?.meta.logStart ?? 0,
            lag: held?.role === 'follower' && held.primarySeq !== null ? Math.max(0, held.primarySeq - held.meta.lastSeq) : null,
            synced_at: held?.role === 'follower' ? held.syncedAt : null,
            sync_error: held?.role === 'follower' ? held.syncError : null,
          };
        });
        const s = d.scrubber.state();
        return { node: d.self, disks, volumes, under_replicated: s.under_replicated, rebalanced: s.rebalanced, scrub: { running: s.running, checked: s.checked, corrupt: s.corrupt, missing: s.missing, repaired: s.repaired }, gc: d.collector.state() };
      },
      scrub: async (p, ctx) => {
        if (!(await mayUpkeep(who(ctx)))) throw new KrpcError('PERMISSION_DENIED', 'starting a scrub needs the admin role');
        return { started: d.scrubber.start(p.disk_id) };
      },
      gc: async (p, ctx) => {
        if (!(await mayUpkeep(who(ctx)))) throw new KrpcError('PERMISSION_DENIED', 'starting chunk collection needs the admin role');
        return { started: d.collector.start(p.accept ?? []) };
      },
    },
    { authenticate: d.authenticate, logger: d.log },
  );
}
