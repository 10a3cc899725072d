// Snapshots of a volume's metadata (docs/dcfs.md, "Followers"): what a follower whose next entry its primary no longer
// keeps catches up from. The primary makes one in a file of its own (SQLite's online backup, not a copy in memory: a
// large namespace is gigabytes) and streams it; the follower checks what it received in a process of its own.
import { fork } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { MetaError, type MetaErrorCode, type SnapshotInfo, type VolumeMeta } from './volume-meta.ts';

export interface OutgoingSnapshot {
  file: string;
  bytes: number;
  seq: number;
  /** Lower-case hex SHA-256 of the file, which the receiver checks before anything else. */
  sha256: string;
  /** Deletes the file: once it is sent, or when sending failed. */
  release(): void;
}

/** Removes a database file with whatever SQLite may have left beside it. */
export function removeDatabase(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) rmSync(f, { force: true });
}

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** A consistent snapshot of `meta`, every change in it durable, in a new file under `dir`. */
export async function makeSnapshot(meta: VolumeMeta, dir: string): Promise<OutgoingSnapshot> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${meta.volume}-${randomUUID()}.db`);
  const release = () => removeDatabase(file);
  try {
    const info = await meta.snapshotTo(file);
    return { file, bytes: statSync(file).size, seq: info.seq, sha256: await fileSha256(file), release };
  } catch (err) {
    release();
    throw err;
  }
}

/** What the check process answers. */
export type CheckAnswer = { ok: true; info: SnapshotInfo } | { ok: false; code: MetaErrorCode; message: string };

/**
 * Checks a received snapshot (VolumeMeta.inspectSnapshot with SQLite's integrity checks) in a child process: the
 * checks read every page, seconds for a large namespace, which on dfs's one event loop would hold up every other
 * request of the node. Rejects with the check's MetaError, or an Error when the process gave no answer.
 */
export function checkSnapshot(file: string, volume: string): Promise<SnapshotInfo> {
  const self = fileURLToPath(import.meta.url);
  const entry = fileURLToPath(new URL(`./snapshot-check${extname(self)}`, import.meta.url));
  return new Promise((resolve, reject) => {
    // The loader flags come along (tests run TypeScript through one); an inspector port would be taken twice.
    const child = fork(entry, [file, volume], { execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')), stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let answer: CheckAnswer | undefined;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-1000)));
    child.on('message', (m: CheckAnswer) => (answer = m));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (answer?.ok) resolve(answer.info);
      else if (answer) reject(new MetaError(answer.code, answer.message));
      else reject(new Error(`the snapshot check exited (${code ?? signal}) without an answer${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    });
  });
}
