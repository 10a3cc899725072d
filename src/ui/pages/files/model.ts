// The files page's rules, without React or the network: where a person may browse (their home and /public), the
// breadcrumbs of a folder, what a new name may be (the same rules dfs applies, so a form says what is wrong before
// anything is sent), what kind of preview a file gets and with which type, how an upload is cut into parts and
// resumed, what a folder upload creates, and what a refusal from the zone means in words. docs/ui-files.md.
import type { DfsEntry } from '../../../lib/api/dfs.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import type { MessageKey } from '../../i18n/en.ts';

/** dfs's limits (src/storage/dfs/paths.ts): a name of at most 255 UTF-8 bytes, a path of at most 4096. */
export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4096;
/** Upload parts: the gateway's UI listener takes at most 16 MiB per part; 8 MiB keeps a part short on a slow link. */
export const PART_BYTES = 8 * 1024 * 1024;

export type Root = 'home' | 'public';

export function homeOf(user: string): string {
  return `/home/${user}`;
}

/** The two places the page opens: the person's home and the zone's shared folder. */
export function rootPath(root: Root, user: string): string {
  return root === 'home' ? homeOf(user) : '/public';
}

/** Which root a path lies in, or null when it is outside both (the page then goes home). */
export function rootOf(path: string, user: string): Root | null {
  const within = (base: string) => path === base || path.startsWith(`${base}/`);
  if (within(homeOf(user))) return 'home';
  if (within('/public')) return 'public';
  return null;
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export interface Crumb {
  path: string;
  /** The root's own crumb is named by the page (Home, Public); the others by their folder name. */
  root?: Root;
  name: string;
}

/** The crumbs from the root down to `path`: nothing above the root is shown, since nothing there may be opened. */
export function crumbs(path: string, user: string): Crumb[] {
  const root = rootOf(path, user);
  if (!root) return [];
  const base = rootPath(root, user);
  const out: Crumb[] = [{ path: base, root, name: baseName(base) }];
  const rest = path.slice(base.length).split('/').filter(Boolean);
  let at = base;
  for (const name of rest) {
    at = joinPath(at, name);
    out.push({ path: at, name });
  }
  return out;
}

/** The page's own URL for a folder (the shell routes on the path alone, so the folder is in the query): `/files` for
 * home, `/files?dir=<path>` otherwise. */
export function folderUrl(path: string, user: string): string {
  return path === homeOf(user) ? '/files' : `/files?${new URLSearchParams({ dir: path })}`;
}

/** The folder a page URL's query names; null when it names nothing the page may open (the page then goes home). */
export function folderFromQuery(search: string, user: string): string | null {
  const dir = new URLSearchParams(search).get('dir');
  if (dir === null) return homeOf(user);
  const path = dir.replace(/\/+$/, '');
  if (!path.startsWith('/') || path.split('/').slice(1).some((s) => s === '' || s === '.' || s === '..')) return null;
  return rootOf(path, user) ? path : null;
}

/** The URL of a file's bytes through the gateway; `version` for a kept older version. */
export function fileUrl(volume: string, path: string, version?: string): string {
  const enc = path.split('/').map(encodeURIComponent).join('/');
  return `/kapi/dfs/files/${volume}${enc}${version ? `?version=${encodeURIComponent(version)}` : ''}`;
}

const encoder = new TextEncoder();
export const utf8Bytes = (s: string): number => encoder.encode(s).length;

export type NameProblem = { key: MessageKey; params?: Record<string, string | number> };

/**
 * What is wrong with a new name for an entry of `dir`, or null. `taken`: the names already there (a rename may keep
 * its own). dfs refuses the same things; checking first keeps a refused form from being sent at all.
 */
export function checkName(raw: string, dir: string, taken: readonly string[], own?: string): NameProblem | null {
  const name = raw.normalize('NFC');
  if (name.trim() === '') return { key: 'files.name.empty' };
  if (utf8Bytes(name) > NAME_MAX_BYTES) return { key: 'files.name.too_long', params: { max: NAME_MAX_BYTES } };
  if (name === '.' || name === '..' || /[/\\\u0000-\u001f\u007f]/.test(name)) return { key: 'files.name.invalid' };
  if (name !== name.trim()) return { key: 'files.name.spaces' };
  if (utf8Bytes(joinPath(dir, name)) > PATH_MAX_BYTES) return { key: 'files.name.path_too_long', params: { max: PATH_MAX_BYTES } };
  // dfs keeps one spelling per name (NFC), and names differing only in case are different files.
  if (name !== own && taken.some((t) => t.normalize('NFC') === name)) return { key: 'files.name.taken' };
  return null;
}

/** What a destination folder for a move may be: inside a root, not the entry itself nor below it. */
export function checkMoveTarget(raw: string, from: string, user: string): NameProblem | null {
  if (raw.trim() === '') return { key: 'files.move.empty' };
  const dir = raw.trim().replace(/\/+$/, '') || '/';
  if (!dir.startsWith('/') || dir.split('/').slice(1).some((s) => s === '' || s === '.' || s === '..')) return { key: 'files.move.invalid' };
  if (!rootOf(dir, user)) return { key: 'files.move.outside' };
  if (dir === from || dir.startsWith(`${from}/`)) return { key: 'files.move.into_itself' };
  if (dir === parentOf(from)) return { key: 'files.move.same' };
  return null;
}

/** Folders first, then files, each by name in the reader's collation (numbers in names counted as numbers). */
export function sortEntries(entries: readonly DfsEntry[], locale: string): DfsEntry[] {
  const coll = new Intl.Collator(locale, { numeric: true, sensitivity: 'base' });
  return [...entries].sort((a, b) => (a.type === b.type ? coll.compare(baseName(a.path), baseName(b.path)) : a.type === 'dir' ? -1 : 1));
}

export type PreviewKind = 'image' | 'video' | 'audio' | 'text' | 'pdf';

/**
 * The preview a file gets, by its extension, and the type its blob is given. dfs stores no trusted type, so the
 * page decides, from this list only: a type a browser would run (HTML, SVG as a document, scripts) is never given.
 */
const TYPES: Record<string, { kind: PreviewKind; mime: string }> = {
  jpg: { kind: 'image', mime: 'image/jpeg' },
  jpeg: { kind: 'image', mime: 'image/jpeg' },
  png: { kind: 'image', mime: 'image/png' },
  gif: { kind: 'image', mime: 'image/gif' },
  webp: { kind: 'image', mime: 'image/webp' },
  avif: { kind: 'image', mime: 'image/avif' },
  bmp: { kind: 'image', mime: 'image/bmp' },
  // In <img>, an SVG is an image: its scripts never run.
  svg: { kind: 'image', mime: 'image/svg+xml' },
  mp4: { kind: 'video', mime: 'video/mp4' },
  m4v: { kind: 'video', mime: 'video/mp4' },
  webm: { kind: 'video', mime: 'video/webm' },
  mov: { kind: 'video', mime: 'video/quicktime' },
  ogv: { kind: 'video', mime: 'video/ogg' },
  mp3: { kind: 'audio', mime: 'audio/mpeg' },
  m4a: { kind: 'audio', mime: 'audio/mp4' },
  aac: { kind: 'audio', mime: 'audio/aac' },
  wav: { kind: 'audio', mime: 'audio/wav' },
  ogg: { kind: 'audio', mime: 'audio/ogg' },
  oga: { kind: 'audio', mime: 'audio/ogg' },
  opus: { kind: 'audio', mime: 'audio/ogg' },
  flac: { kind: 'audio', mime: 'audio/flac' },
  pdf: { kind: 'pdf', mime: 'application/pdf' },
};
const TEXT = new Set(['txt', 'md', 'markdown', 'csv', 'tsv', 'log', 'json', 'xml', 'yaml', 'yml', 'toml', 'ini', 'conf', 'cfg', 'sh', 'py', 'js', 'ts', 'tsx', 'jsx', 'css', 'html', 'htm', 'c', 'h', 'cpp', 'rs', 'go', 'java', 'sql', 'srt', 'vtt']);

export function previewOf(name: string): { kind: PreviewKind; mime: string } | null {
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return null;
  const ext = name.slice(dot + 1).toLowerCase();
  if (TYPES[ext]) return TYPES[ext];
  // Text of any kind (HTML and scripts included) is shown as text, never rendered.
  if (TEXT.has(ext)) return { kind: 'text', mime: 'text/plain' };
  return null;
}

/** How much of a text file the preview reads: enough to recognise it, not a whole log. */
export const TEXT_PREVIEW_BYTES = 256 * 1024;
/** Past these sizes a thumbnail is not worth the download (the file is fetched whole to draw it). */
export const THUMB_MAX_IMAGE_BYTES = 32 * 1024 * 1024;
export const THUMB_MAX_VIDEO_BYTES = 64 * 1024 * 1024;
/** The long side of a thumbnail, in CSS pixels at 2x. */
export const THUMB_PX = 160;

/** Whether a file gets a drawn thumbnail, and from what. */
export function thumbKind(e: Pick<DfsEntry, 'path' | 'size' | 'type' | 'content_id'>): 'image' | 'video' | null {
  if (e.type !== 'file' || !e.content_id || e.size === 0) return null;
  const p = previewOf(baseName(e.path));
  if (p?.kind === 'image' && e.size <= THUMB_MAX_IMAGE_BYTES) return 'image';
  if (p?.kind === 'video' && e.size <= THUMB_MAX_VIDEO_BYTES) return 'video';
  return null;
}

/** A thumbnail's size: the picture scaled to fit `max` on its long side, never enlarged. */
export function fitWithin(width: number, height: number, max: number): { width: number; height: number } {
  if (width <= 0 || height <= 0) return { width: 0, height: 0 };
  const scale = Math.min(1, max / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** The next part of an upload that stands at `offset` of `size` bytes: [start, end) or null when complete. */
export function nextPart(offset: number, size: number, partBytes = PART_BYTES): { start: number; end: number } | null {
  if (offset >= size) return null;
  return { start: offset, end: Math.min(size, offset + partBytes) };
}

/** A picked file, as a folder upload reports it (`relative`: its path inside the picked folder, '' for a file). */
export interface PickedFile {
  name: string;
  relative: string;
  size: number;
  lastModified: number;
}

export interface UploadPlan {
  /** Folders to create first, parents before children. */
  folders: string[];
  /** Each picked file's destination, in the order picked. */
  files: { index: number; path: string }[];
  /** Names that cannot be stored (dfs would refuse them): reported, not sent. */
  refused: { name: string; problem: NameProblem }[];
}

/** Where each picked file goes under `dir`, and which folders a folder upload needs. */
export function planUpload(picked: readonly PickedFile[], dir: string): UploadPlan {
  const folders = new Set<string>();
  const files: UploadPlan['files'] = [];
  const refused: UploadPlan['refused'] = [];
  picked.forEach((f, index) => {
    const rel = (f.relative || f.name).split('/').filter(Boolean);
    let at = dir;
    for (const [i, seg] of rel.entries()) {
      const problem = checkName(seg, at, []);
      if (problem) {
        refused.push({ name: f.relative || f.name, problem });
        return;
      }
      at = joinPath(at, seg.normalize('NFC'));
      if (i < rel.length - 1) folders.add(at);
    }
    files.push({ index, path: at });
  });
  return { folders: [...folders].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b)), files, refused };
}

/** What identifies "the same upload" across an interruption or a reload: the destination and the file itself. */
export function resumeKey(volume: string, path: string, f: Pick<PickedFile, 'size' | 'lastModified'>): string {
  return `${volume}:${path}:${f.size}:${f.lastModified}`;
}

/** A refusal from the zone, in words, for the field (or the form) it concerns. */
export function explainFileError(e: unknown): NameProblem {
  if (!(e instanceof KrpcError)) return { key: 'files.error.network' };
  const reason = (e.data as { reason?: unknown } | undefined)?.reason;
  if (reason === 'QUOTA_EXCEEDED') return { key: 'files.error.quota' };
  if (reason === 'MOVE_TARGET') return { key: 'files.move.missing' };
  switch (e.code) {
    case 'ALREADY_EXISTS':
      return { key: 'files.name.taken' };
    case 'PERMISSION_DENIED':
      return { key: 'files.error.denied' };
    case 'NOT_FOUND':
      return { key: 'files.error.gone' };
    case 'INVALID_PARAMS':
      return { key: 'files.name.invalid' };
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return { key: 'files.error.unavailable' };
    default:
      return { key: 'files.error.other', params: { message: e.message } };
  }
}
