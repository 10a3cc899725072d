// Reading a small file that may not be there yet: state files, caches, records a first start has not written.
import { readFileSync } from 'node:fs';

/** The file's text, or null when there is no such file; any other failure (permissions, I/O) is thrown. */
export function readTextIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
