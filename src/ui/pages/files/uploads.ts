// The uploads of this tab, outside React: they go on, one file at a time, while the person opens other folders,
// tabs or pages, and the files page shows them again when it comes back. A change of session (sign-out, another
// user) stops them and forgets them, so nobody sees another person's file names.
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { session } from '../../api.ts';
import { type NameProblem, explainFileError } from './model.ts';
import { abandonUpload, uploadFile } from './transfer.ts';

export type TransferState = 'queued' | 'uploading' | 'done' | 'interrupted' | 'failed' | 'cancelled';

export interface Transfer {
  id: number;
  volume: string;
  path: string;
  file: File;
  state: TransferState;
  sent: number;
  /** Bytes the zone already held when the latest attempt started. */
  resumedAt: number;
  problem?: NameProblem;
}

let transfers: readonly Transfer[] = [];
let owner = session.get()?.sid ?? null;
let nextId = 1;
let running = false;
const queue: number[] = [];
const controllers = new Map<number, AbortController>();
const listeners = new Set<() => void>();
const finishers = new Set<(t: Transfer) => void>();

function set(next: readonly Transfer[]): void {
  transfers = next;
  for (const l of listeners) l();
}

function update(id: number, patch: Partial<Transfer>): void {
  set(transfers.map((x) => (x.id === id ? { ...x, ...patch } : x)));
}

const find = (id: number) => transfers.find((x) => x.id === id);

session.subscribe(() => {
  const sid = session.get()?.sid ?? null;
  if (sid === owner) return;
  owner = sid;
  for (const c of controllers.values()) c.abort();
  queue.length = 0;
  set([]);
});

async function pump(): Promise<void> {
  if (running) return;
  running = true;
  try {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const x = find(id);
      if (!x || x.state !== 'queued') continue;
      const stop = new AbortController();
      controllers.set(id, stop);
      update(id, { state: 'uploading', problem: undefined });
      try {
        await uploadFile(x.volume, x.path, x.file, (p) => update(id, { sent: p.sent, resumedAt: p.resumedAt }), stop.signal);
        update(id, { state: 'done', sent: x.file.size });
      } catch (e) {
        if (stop.signal.aborted) continue;
        const network = e instanceof TypeError || (e instanceof KrpcError && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT'));
        update(id, network ? { state: 'interrupted', problem: { key: 'files.upload.interrupted' } } : { state: 'failed', problem: explainFileError(e) });
      } finally {
        controllers.delete(id);
      }
      const done = find(id);
      if (done) for (const f of finishers) f(done);
    }
  } finally {
    running = false;
  }
}

export const uploads = {
  subscribe(fn: () => void): () => void {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  snapshot: (): readonly Transfer[] => transfers,
  /** Called after each upload ends, however it ended (the folder it went to is shown afresh). */
  onFinished(fn: (t: Transfer) => void): () => void {
    finishers.add(fn);
    return () => finishers.delete(fn);
  },
  /** Queues files; the list keeps what is still under way or needs attention, newest first. */
  add(items: readonly { volume: string; path: string; file: File }[]): void {
    const xs: Transfer[] = items.map((i) => ({ ...i, id: nextId++, state: 'queued', sent: 0, resumedAt: 0 }));
    set([...xs, ...transfers.filter((x) => x.state !== 'done' && x.state !== 'cancelled')]);
    queue.push(...xs.map((x) => x.id));
    void pump();
  },
  /** Stops an upload and drops what the zone held of it. */
  async cancel(id: number): Promise<void> {
    const x = find(id);
    if (!x) return;
    controllers.get(id)?.abort();
    update(id, { state: 'cancelled', problem: undefined });
    await abandonUpload(x.volume, x.path, x.file);
  },
  /** Continues an interrupted upload from where the zone stands. */
  resume(id: number): void {
    if (find(id)?.state !== 'interrupted') return;
    update(id, { state: 'queued', problem: undefined });
    queue.push(id);
    void pump();
  },
};
