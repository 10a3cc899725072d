// Thumbnails drawn in the browser from the files themselves: an image is decoded (createImageBitmap, or an <img>
// for SVG) and a video's frame at about a tenth of its length is taken, then scaled onto a canvas and kept as a small
// WebP. Kept in memory by content id for as long as the tab lives, so a thumbnail is drawn once per content and can
// never be stale (a changed file has another id); nothing of a file is written to the browser's storage, where the
// next person at a shared computer could find it. At most two are drawn at a time.
import type { DfsEntry } from '../../../lib/api/dfs.ts';
import { THUMB_PX, baseName, fitWithin, previewOf, thumbKind } from './model.ts';
import { fetchBlob } from './transfer.ts';

const MAX_KEPT = 400;
const CONCURRENCY = 2;

const kept = new Map<string, string>();
const drawing = new Map<string, Promise<string | null>>();
const waiting: (() => void)[] = [];
let running = 0;

async function slot(): Promise<() => void> {
  if (running >= CONCURRENCY) await new Promise<void>((go) => waiting.push(go));
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

function keep(id: string, url: string): void {
  kept.set(id, url);
  if (kept.size > MAX_KEPT) {
    const [oldest, old] = kept.entries().next().value as [string, string];
    kept.delete(oldest);
    URL.revokeObjectURL(old);
  }
}

async function toThumb(source: CanvasImageSource, width: number, height: number): Promise<string | null> {
  const size = fitWithin(width, height, THUMB_PX);
  if (size.width === 0) return null;
  const canvas = document.createElement('canvas');
  canvas.width = size.width;
  canvas.height = size.height;
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, size.width, size.height);
  const blob = await new Promise<Blob | null>((done) => canvas.toBlob(done, 'image/webp', 0.8));
  return blob ? URL.createObjectURL(blob) : null;
}

async function fromImage(blob: Blob): Promise<string | null> {
  if (blob.type !== 'image/svg+xml') {
    const bitmap = await createImageBitmap(blob);
    try {
      return await toThumb(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
  }
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return await toThumb(img, img.naturalWidth, img.naturalHeight);
  } finally {
    URL.revokeObjectURL(url);
  }
}

function once(el: HTMLMediaElement, event: string): Promise<void> {
  return new Promise((ok, fail) => {
    el.addEventListener(event, () => ok(), { once: true });
    el.addEventListener('error', () => fail(new Error('the video could not be decoded')), { once: true });
  });
}

async function fromVideo(blob: Blob): Promise<string | null> {
  const url = URL.createObjectURL(blob);
  const video = document.createElement('video');
  video.muted = true;
  video.preload = 'auto';
  video.playsInline = true;
  try {
    const loaded = once(video, 'loadeddata');
    video.src = url;
    await loaded;
    const seeked = once(video, 'seeked');
    video.currentTime = Number.isFinite(video.duration) ? Math.min(video.duration / 10, 5) : 0;
    await seeked;
    return await toThumb(video, video.videoWidth, video.videoHeight);
  } finally {
    video.removeAttribute('src');
    video.load();
    URL.revokeObjectURL(url);
  }
}

/** The thumbnail's URL for a file, drawn on first ask; null when the file gets none or cannot be decoded. */
export function thumbnail(volume: string, e: DfsEntry): Promise<string | null> {
  const kind = thumbKind(e);
  const id = e.content_id;
  if (!kind || !id) return Promise.resolve(null);
  const hit = kept.get(id);
  if (hit) return Promise.resolve(hit);
  let p = drawing.get(id);
  if (!p) {
    p = (async () => {
      const release = await slot();
      try {
        const type = previewOf(baseName(e.path))?.mime;
        const blob = await fetchBlob(volume, e.path, { type });
        const url = kind === 'image' ? await fromImage(blob) : await fromVideo(blob);
        if (url) keep(id, url);
        return url;
      } catch {
        // Undecodable or unreachable: the file keeps its icon.
        return null;
      } finally {
        release();
        drawing.delete(id);
      }
    })();
    drawing.set(id, p);
  }
  return p;
}

/** An already drawn thumbnail, without drawing one. */
export function keptThumbnail(contentId: string | null): string | null {
  return contentId ? (kept.get(contentId) ?? null) : null;
}
