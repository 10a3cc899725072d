// The project's native addons (native/<dir>, built from source at install time by `npm run build:native`): loading
// one, or saying why it cannot be used, so that its caller falls back to JavaScript and can say so in its log.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type AddonLoad<T> = { addon: T } | { reason: string };

/** native/<dir>/build/Release/<name>.node, where node-gyp puts it (the same from src/lib/ and dist/lib/). */
export function loadNativeAddon<T>(dir: string, name: string): AddonLoad<T> {
  const path = fileURLToPath(new URL(`../../native/${dir}/build/Release/${name}.node`, import.meta.url));
  try {
    return { addon: createRequire(import.meta.url)(path) as T };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { reason: e.code === 'MODULE_NOT_FOUND' ? `${path} is not built` : e.message };
  }
}
