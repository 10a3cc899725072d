// The built system UI's files (dist/ui, written by scripts/build-ui.ts), as the gateway's UI listener serves them:
// only the files the build lists, hashed assets cached for good, everything else revalidated, precompressed copies
// when the browser takes them, and index.html with a fresh CSP nonce per response for the styles the component
// library injects. docs/ui.md explains the choices.
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { extname, join } from 'node:path';
import { z } from 'zod';

/** `build.json` in the UI directory: what the build wrote. The gateway serves nothing it does not list. */
export const uiBuildSchema = z.object({
  /** Changes whenever any output changes; the service worker's cache is named by it. */
  id: z.string().regex(/^[0-9a-f]{8,64}$/),
  /** Milliseconds since the epoch. */
  built_at: z.number(),
  /** URL path → the precompressed copies written beside the file (`<file>.br`, `<file>.gz`), and whether it is an
   * asset kept from the previous build for pages still running it. */
  files: z.record(
    z.string().regex(/^\/[A-Za-z0-9._/-]+$/).refine((p) => !p.split('/').includes('..')),
    z.object({ encodings: z.array(z.enum(['br', 'gzip'])), carried: z.boolean().optional() }),
  ),
  /** Source files the build read, relative to the repository, for staleness checks; absent from a packaged build. */
  inputs: z.array(z.string()).optional(),
});
export type UiBuild = z.infer<typeof uiBuildSchema>;

export const UI_BUILD_FILE = 'build.json';
/** In index.html, replaced by each response's nonce. */
export const NONCE_PLACEHOLDER = '__CSP_NONCE__';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

const ENCODING_SUFFIX = { br: '.br', gzip: '.gz' } as const;

/**
 * The page's policy: nothing but this origin's own scripts, styles and connections, no framing, no plugins. Inline
 * styles are allowed only with the response's nonce (the component library writes its theme variables and
 * responsive rules into <style> elements); style attributes set from script are not subject to CSP.
 */
export function contentSecurityPolicy(nonce?: string): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self'${nonce ? ` 'nonce-${nonce}'` : ''}`,
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Whether an Accept-Encoding header takes `enc` (present, and not with q=0). */
export function acceptsEncoding(header: string | undefined, enc: string): boolean {
  return (header ?? '').split(',').some((part) => {
    const [name, ...params] = part.split(';');
    if (name?.trim().toLowerCase() !== enc) return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

const NOT_BUILT_PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>BuckyOS</title>
<p>The system UI is not built on this device. Build it with <code>npm run build</code> in the BuckyOS directory, then reload this page.</p></html>`;

export class UiFiles {
  private cached: { mtimeMs: number; build: UiBuild; index: string } | null = null;

  constructor(private readonly dir: string) {}

  /** The current build, re-read when build.json changes (a rebuild swaps the directory), or null when none. */
  private async current(): Promise<{ build: UiBuild; index: string } | null> {
    const file = join(this.dir, UI_BUILD_FILE);
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(file)).mtimeMs;
    } catch {
      return null;
    }
    if (this.cached?.mtimeMs === mtimeMs) return this.cached;
    try {
      const build = uiBuildSchema.parse(JSON.parse(await readFile(file, 'utf8')));
      const index = await readFile(join(this.dir, 'index.html'), 'utf8');
      this.cached = { mtimeMs, build, index };
      return this.cached;
    } catch {
      // Half-written or foreign: serve nothing rather than something unlisted.
      return null;
    }
  }

  async serve(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const cur = await this.current();
    if (!cur) {
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'none'" });
      res.end(req.method === 'HEAD' ? undefined : NOT_BUILT_PAGE);
      return;
    }
    const { build, index } = cur;
    let path = url.pathname === '/' ? '/index.html' : url.pathname;
    const known = Object.prototype.hasOwnProperty.call(build.files, path);
    // Client-side routes (/dashboard, /devices/x) are the app's: answer them with the app.
    const isRoute = !known && !path.startsWith('/assets/') && !extname(path);
    if (isRoute) path = '/index.html';
    if (!known && !isRoute) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `not found: ${url.pathname}\n`);
      return;
    }
    if (path === '/index.html') return sendIndex(req, res, index);

    const immutable = path.startsWith('/assets/');
    const etag = `"${build.id}"`;
    if (!immutable && req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag, 'cache-control': 'no-cache' });
      res.end();
      return;
    }
    const encodings = build.files[path]!.encodings;
    const enc = (['br', 'gzip'] as const).find((e) => encodings.includes(e) && acceptsEncoding(req.headers['accept-encoding'], e));
    const file = join(this.dir, path + (enc ? ENCODING_SUFFIX[enc] : ''));
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `not found: ${url.pathname}\n`);
      return;
    }
    const headers: Record<string, string | number> = {
      'content-type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      vary: 'accept-encoding',
    };
    if (!immutable) headers.etag = etag;
    if (enc) headers['content-encoding'] = enc;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  }
}

function sendIndex(req: IncomingMessage, res: ServerResponse, template: string): void {
  const nonce = randomBytes(16).toString('base64');
  const body = template.replaceAll(NONCE_PLACEHOLDER, nonce);
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    // Revalidated, not stored: each answer carries its own nonce.
    'cache-control': 'no-cache',
    'content-security-policy': contentSecurityPolicy(nonce),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
