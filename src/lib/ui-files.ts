// The built system UI's files (dist/ui, written by scripts/build-ui.ts), as the gateway's UI listener (the signed-in
// app, index.html) and an unactivated device's activation service (activation.html) serve them: only the files the
// build lists, hashed assets cached for good, everything else revalidated, precompressed copies when the browser
// takes them, the page with a fresh CSP nonce per response for the styles the component library injects, and the
// same security headers on every answer. docs/ui.md explains the choices.
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
/** In the built pages (index.html, activation.html), replaced by each response's nonce. */
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
 * `blob:` is allowed for images, media and frames, and nothing else: the files page (docs/ui-files.md) fetches a
 * file with the session token in a header and shows it from a blob URL it made itself, with a type it chose (an image,
 * a video, audio, or a PDF in the browser's own viewer inside a frame), never the file's own claim of a type.
 */
export function contentSecurityPolicy(nonce?: string): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self'${nonce ? ` 'nonce-${nonce}'` : ''}`,
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "frame-src blob:",
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

/** Whether the browser treats the origin the request was made to as potentially trustworthy: HTTPS, or a loopback
 * host. Only there does it apply Cross-Origin-Opener-Policy; elsewhere (plain HTTP on the LAN) it ignores the header
 * and says so in the console, as an error. */
function trustworthyOrigin(req: IncomingMessage): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted) return true;
  const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
  return host === 'localhost' || host.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(host) || host === '[::1]';
}

/** Headers every answer of a listener serving the UI carries, whatever it is (a file, an error, a kRPC answer). */
export function setUiSecurityHeaders(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('x-frame-options', 'DENY');
  if (trustworthyOrigin(req)) res.setHeader('cross-origin-opener-policy', 'same-origin');
  res.setHeader('cross-origin-resource-policy', 'same-origin');
  res.setHeader('content-security-policy', contentSecurityPolicy());
}

/** The origin a browser names must be the one it talks to: a page elsewhere gets no answer it could use. */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
}

export interface UiFilesOptions {
  /** The HTML page this listener serves at `/` and for client-side routes; the build's other pages are not served.
   * `/index.html` (the signed-in app) by default. */
  page?: string;
}

export class UiFiles {
  private cached: { mtimeMs: number; build: UiBuild; page: string } | null = null;
  private readonly page: string;

  constructor(
    private readonly dir: string,
    opts: UiFilesOptions = {},
  ) {
    this.page = opts.page ?? '/index.html';
  }

  /** The current build, re-read when build.json changes (a rebuild swaps the directory), or null when none. */
  private async current(): Promise<{ build: UiBuild; page: string } | null> {
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
      const page = await readFile(join(this.dir, this.page), 'utf8');
      this.cached = { mtimeMs, build, page };
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
    const { build, page } = cur;
    let path = url.pathname === '/' ? this.page : url.pathname;
    // Another page of the build (the activation page on the zone's listener, or the reverse) is not this listener's.
    const known = Object.prototype.hasOwnProperty.call(build.files, path) && (extname(path) !== '.html' || path === this.page);
    // Client-side routes (/dashboard, /devices/x) are the app's: answer them with the app.
    const isRoute = !known && !path.startsWith('/assets/') && !extname(path);
    if (isRoute) path = this.page;
    if (!known && !isRoute) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `not found: ${url.pathname}\n`);
      return;
    }
    if (path === this.page) return sendPage(req, res, page);

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

function sendPage(req: IncomingMessage, res: ServerResponse, template: string): void {
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
