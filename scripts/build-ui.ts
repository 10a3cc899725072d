// Builds the system UI (src/ui) into dist/ui, which the gateway's UI listener serves (docs/ui.md):
//   node --import tsx scripts/build-ui.ts
// esbuild bundles the app and the activation page an unactivated device serves (two entries sharing chunks; code-split,
// one chunk per page, content-hashed names under /assets/) and the service worker; this script adds index.html and
// activation.html, the web app manifest and its icons, precompressed copies, and build.json,
// the list of files the gateway may serve. The new build replaces the old one in one rename, and keeps the old
// build's assets so pages loaded from it can still fetch their chunks.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { brotliCompressSync, constants as zlibConstants, deflateSync, gzipSync } from 'node:zlib';
import { NONCE_PLACEHOLDER, UI_BUILD_FILE, type UiBuild, uiBuildSchema } from '../src/lib/ui-files.ts';

export const REPO = fileURLToPath(new URL('..', import.meta.url));
const UI_SRC = join(REPO, 'src', 'ui');
export const UI_OUT = join(REPO, 'dist', 'ui');

/** Browsers the bundle is written for: those React 19 and Mantine 9 support (2023 and later). */
const TARGETS = ['es2022', 'chrome111', 'edge111', 'firefox115', 'safari16.4'];
/** Inputs outside the bundle's import graph that still shape the output. */
const EXTRA_INPUTS = ['scripts/build-ui.ts', 'src/ui/index.html', 'src/ui/activation/activation.html', 'src/ui/sw.ts', 'src/lib/ui-files.ts', 'package-lock.json'];
/** Source maps are left as they are: only developer tools fetch them. */
const COMPRESSIBLE = /\.(js|css|svg|webmanifest|json|txt)$/;

export interface UiBuildReport {
  id: string;
  dir: string;
  /** The JavaScript a first visit loads before anything renders: the entry and what it imports statically. */
  initialJs: { files: string[]; bytes: number; gzipBytes: number };
  initialCss: { files: string[]; bytes: number; gzipBytes: number };
  /** The same for the activation page (activation.html), which unactivated devices serve. */
  activation: { initialJs: { files: string[]; bytes: number; gzipBytes: number }; initialCss: { files: string[]; bytes: number; gzipBytes: number } };
  /** Every JavaScript file of the build, pages included. */
  totalJs: { bytes: number; gzipBytes: number };
}

// ---- icons ------------------------------------------------------------------------------------------------------

const BRAND = [0x19, 0x71, 0xc2] as const;

/** The mark: a white cloud of three circles on a flat base, in a 100-unit square. */
const CLOUD = { circles: [[36, 58, 15], [52, 46, 20], [67, 59, 14]] as const, base: [36, 58, 31, 15] as const };

function inCloud(x: number, y: number): boolean {
  const [bx, by, bw, bh] = CLOUD.base;
  if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) return true;
  return CLOUD.circles.some(([cx, cy, r]) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r);
}

function inRoundedSquare(x: number, y: number, r: number): boolean {
  const dx = Math.max(r - x, 0, x - (100 - r));
  const dy = Math.max(r - y, 0, y - (100 - r));
  return dx * dx + dy * dy <= r * r;
}

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect width="100" height="100" rx="22" fill="#1971c2"/><g fill="#fff">${CLOUD.circles
  .map(([cx, cy, r]) => `<circle cx="${cx}" cy="${cy}" r="${r}"/>`)
  .join('')}<rect x="${CLOUD.base[0]}" y="${CLOUD.base[1]}" width="${CLOUD.base[2]}" height="${CLOUD.base[3]}"/></g></svg>\n`;

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** The icon as an RGBA PNG, 4×4 samples a pixel for smooth edges. Maskable: full-bleed background, the mark inside
 * the central safe circle (80% of the size) that launchers may crop to. */
function iconPng(size: number, maskable: boolean): Buffer {
  const rows: Buffer[] = [];
  const S = 4;
  const markScale = maskable ? 0.78 : 1;
  for (let py = 0; py < size; py++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let px = 0; px < size; px++) {
      let bg = 0;
      let mark = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const x = ((px + (sx + 0.5) / S) / size) * 100;
          const y = ((py + (sy + 0.5) / S) / size) * 100;
          if (!maskable && !inRoundedSquare(x, y, 22)) continue;
          bg++;
          if (inCloud(50 + (x - 50) / markScale, 50 + (y - 50) / markScale)) mark++;
        }
      }
      const a = bg / (S * S);
      const w = bg ? mark / bg : 0;
      const o = 1 + px * 4;
      for (let c = 0; c < 3; c++) row[o + c] = Math.round(BRAND[c]! * (1 - w) + 255 * w);
      row[o + 3] = Math.round(a * 255);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8;
  ihdr[9] = 6;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const MANIFEST = {
  name: 'BuckyOS',
  short_name: 'BuckyOS',
  description: 'Your personal cloud: devices, storage and services in one zone.',
  id: '/',
  start_url: '/',
  scope: '/',
  display: 'standalone',
  background_color: '#ffffff',
  theme_color: '#1971c2',
  icons: [
    { src: '/icon.svg', sizes: 'any', type: 'image/svg+xml' },
    { src: '/icon-192.png', sizes: '192x192', type: 'image/png' },
    { src: '/icon-512.png', sizes: '512x512', type: 'image/png' },
    { src: '/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
  ],
};

// ---- the build --------------------------------------------------------------------------------------------------

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** URL path of a file in the output directory. */
const urlPath = (dir: string, file: string) => `/${relative(dir, file).split('\\').join('/')}`;

function gzipSize(buf: Buffer): number {
  return gzipSync(buf, { level: 9 }).length;
}

function readPreviousBuild(): UiBuild | null {
  try {
    return uiBuildSchema.parse(JSON.parse(readFileSync(join(UI_OUT, UI_BUILD_FILE), 'utf8')));
  } catch {
    return null;
  }
}

/** Swaps `fresh` in as dist/ui. Another build may swap at the same moment (tests and benches build on demand); both
 * produce the same files from the same sources, so whichever lands last is as good, and a collision is retried. */
function swapIn(fresh: string): void {
  for (let attempt = 0; ; attempt++) {
    const old = `${UI_OUT}.old-${process.pid}-${attempt}`;
    try {
      if (existsSync(UI_OUT)) renameSync(UI_OUT, old);
      renameSync(fresh, UI_OUT);
      rmSync(old, { recursive: true, force: true });
      return;
    } catch (e) {
      rmSync(old, { recursive: true, force: true });
      if (attempt >= 10) throw e;
    }
  }
}

export async function buildUi(): Promise<UiBuildReport> {
  const distDir = dirname(UI_OUT);
  mkdirSync(distDir, { recursive: true });
  const out = join(distDir, `.ui-build-${process.pid}-${Date.now()}`);
  mkdirSync(out);
  try {
    const app = await build({
      absWorkingDir: REPO,
      entryPoints: { app: 'src/ui/main.tsx', activation: 'src/ui/activation/main.tsx' },
      outdir: out,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'browser',
      target: TARGETS,
      minify: true,
      sourcemap: 'linked',
      legalComments: 'linked',
      charset: 'utf8',
      jsx: 'automatic',
      entryNames: 'assets/[name]-[hash]',
      chunkNames: 'assets/[name]-[hash]',
      assetNames: 'assets/[name]-[hash]',
      define: { 'process.env.NODE_ENV': '"production"' },
      metafile: true,
      logLevel: 'warning',
    });
    const outputs = app.metafile.outputs;
    const rel = (p: string) => `/${relative(out, join(REPO, p)).split('\\').join('/')}`;
    /** What an entry loads before it runs: itself and its static imports, transitively (pages are dynamic imports). */
    const initialOf = (source: string) => {
      const entry = Object.entries(outputs).find(([, o]) => o.entryPoint === source);
      if (!entry) throw new Error(`esbuild wrote no entry chunk for ${source}`);
      const [entryFile, entryMeta] = entry;
      const initial = new Set<string>([entryFile]);
      for (const queue = [entryFile]; queue.length > 0; ) {
        for (const imp of outputs[queue.pop()!]!.imports) {
          if (imp.kind === 'import-statement' && !imp.external && !initial.has(imp.path)) {
            initial.add(imp.path);
            queue.push(imp.path);
          }
        }
      }
      return { js: [...initial].map(rel), css: entryMeta.cssBundle ? [rel(entryMeta.cssBundle)] : [] };
    };
    const { js: initialJs, css: initialCss } = initialOf('src/ui/main.tsx');
    const activation = initialOf('src/ui/activation/main.tsx');

    writeFileSync(join(out, 'icon.svg'), ICON_SVG);
    writeFileSync(join(out, 'icon-192.png'), iconPng(192, false));
    writeFileSync(join(out, 'icon-512.png'), iconPng(512, false));
    writeFileSync(join(out, 'icon-maskable-512.png'), iconPng(512, true));
    writeFileSync(join(out, 'manifest.webmanifest'), JSON.stringify(MANIFEST, null, 2) + '\n');
    const writePage = (template: string, name: string, js: string[], css: string[]) => {
      const source = readFileSync(join(REPO, template), 'utf8');
      if (!source.includes(NONCE_PLACEHOLDER)) throw new Error(`${template} lacks the ${NONCE_PLACEHOLDER} placeholder the server fills`);
      const html = source
        .replace('<!--styles-->', css.map((f) => `<link rel="stylesheet" href="${f}">`).join('\n    '))
        .replace('<!--scripts-->', [
          ...js.slice(1).map((f) => `<link rel="modulepreload" href="${f}">`),
          `<script type="module" src="${js[0]}"></script>`,
        ].join('\n    '));
      writeFileSync(join(out, name), html);
    };
    writePage('src/ui/index.html', 'index.html', initialJs, initialCss);
    writePage('src/ui/activation/activation.html', 'activation.html', activation.js, activation.css);

    // The id covers every file but the worker, which embeds it.
    const hash = createHash('sha256');
    for (const f of walk(out).sort()) hash.update(urlPath(out, f)).update('\0').update(readFileSync(f)).update('\0');
    const id = hash.digest('hex').slice(0, 16);
    const shell = [...initialJs, ...initialCss, '/manifest.webmanifest', '/icon.svg', '/icon-192.png'];
    await build({
      absWorkingDir: REPO,
      entryPoints: ['src/ui/sw.ts'],
      outfile: join(out, 'sw.js'),
      bundle: true,
      format: 'iife',
      platform: 'browser',
      target: TARGETS,
      minify: true,
      define: { __BUILD__: JSON.stringify({ id, shell }) },
      logLevel: 'warning',
    });

    const files: UiBuild['files'] = {};
    for (const f of walk(out)) {
      const path = urlPath(out, f);
      const encodings: ('br' | 'gzip')[] = [];
      // The pages are rewritten per response (their nonce), so they are never served from a compressed copy.
      if (COMPRESSIBLE.test(f) && !path.endsWith('.html') && statSync(f).size > 1024) {
        const raw = readFileSync(f);
        const br = brotliCompressSync(raw, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: raw.length } });
        const gz = gzipSync(raw, { level: 9 });
        if (br.length < raw.length) {
          writeFileSync(`${f}.br`, br);
          encodings.push('br');
        }
        if (gz.length < raw.length) {
          writeFileSync(`${f}.gz`, gz);
          encodings.push('gzip');
        }
      }
      files[path] = { encodings };
    }
    // The previous build's own assets (not those it carried itself), so that a page it served can load its chunks.
    const previous = readPreviousBuild();
    if (previous) {
      for (const [path, f] of Object.entries(previous.files)) {
        if (!path.startsWith('/assets/') || f.carried || files[path]) continue;
        for (const suffix of ['', ...f.encodings.map((e) => (e === 'br' ? '.br' : '.gz'))]) {
          const src = join(UI_OUT, path + suffix);
          if (!existsSync(src)) continue;
          mkdirSync(dirname(join(out, path)), { recursive: true });
          copyFileSync(src, join(out, path + suffix));
        }
        if (existsSync(join(out, path))) files[path] = { encodings: f.encodings, carried: true };
      }
    }

    const inputs = [...new Set([...Object.keys(app.metafile.inputs).filter((p) => !p.startsWith('node_modules/')), ...EXTRA_INPUTS])].sort();
    const record: UiBuild = { id, built_at: Date.now(), files, inputs };
    writeFileSync(join(out, UI_BUILD_FILE), JSON.stringify(record, null, 2) + '\n');

    const sizes = (list: string[]) => {
      const bufs = list.map((p) => readFileSync(join(out, p)));
      return { files: list, bytes: bufs.reduce((a, b) => a + b.length, 0), gzipBytes: bufs.reduce((a, b) => a + gzipSize(b), 0) };
    };
    const allJs = Object.keys(outputs).filter((p) => p.endsWith('.js')).map(rel);
    const total = sizes(allJs);
    const report: UiBuildReport = {
      id,
      dir: UI_OUT,
      initialJs: sizes(initialJs),
      initialCss: sizes(initialCss),
      activation: { initialJs: sizes(activation.js), initialCss: sizes(activation.css) },
      totalJs: { bytes: total.bytes, gzipBytes: total.gzipBytes },
    };
    swapIn(out);
    return report;
  } catch (e) {
    rmSync(out, { recursive: true, force: true });
    throw e;
  }
}

/** Why dist/ui does not match the sources (missing, or an input newer than it), or null when it does. */
export function uiStaleness(): string | null {
  let built: UiBuild;
  try {
    built = uiBuildSchema.parse(JSON.parse(readFileSync(join(UI_OUT, UI_BUILD_FILE), 'utf8')));
  } catch {
    return 'dist/ui is not built';
  }
  if (!built.inputs) return 'dist/ui lists no inputs';
  for (const input of built.inputs) {
    let mtime: number;
    try {
      mtime = statSync(join(REPO, input)).mtimeMs;
    } catch {
      return `${input} is gone`;
    }
    if (mtime > built.built_at) return `${input} changed`;
  }
  // A source file added since (a new page) is seen by the directory it was added to.
  for (const f of walk(UI_SRC)) {
    const name = relative(REPO, f);
    if (!name.endsWith('.test.ts') && !built.inputs.includes(name) && statSync(f).mtimeMs > built.built_at) return `${name} is new`;
  }
  return null;
}

/** Builds the UI when dist/ui is missing or older than its sources; answers whether it built. */
export async function ensureUiBuilt(): Promise<boolean> {
  if (uiStaleness() === null) return false;
  await buildUi();
  return true;
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const started = Date.now();
  const r = await buildUi();
  console.log(`system UI built into ${relative(process.cwd(), r.dir) || '.'} in ${Date.now() - started} ms (build ${r.id})`);
  console.log(`initial JavaScript: ${kb(r.initialJs.bytes)}, ${kb(r.initialJs.gzipBytes)} gzipped (${r.initialJs.files.length} files)`);
  console.log(`initial CSS: ${kb(r.initialCss.bytes)}, ${kb(r.initialCss.gzipBytes)} gzipped`);
  console.log(`activation page: initial JavaScript ${kb(r.activation.initialJs.bytes)}, ${kb(r.activation.initialJs.gzipBytes)} gzipped (${r.activation.initialJs.files.length} files); CSS ${kb(r.activation.initialCss.gzipBytes)} gzipped`);
  console.log(`all JavaScript: ${kb(r.totalJs.bytes)}, ${kb(r.totalJs.gzipBytes)} gzipped`);
}
