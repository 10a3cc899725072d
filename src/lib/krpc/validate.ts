// Validation helpers the kRPC declarations (src/lib/api) share with the server. Free of Node built-ins, because the
// declarations also run in the browser (the system UI checks params with them before sending).
import type { z } from 'zod';

/** Requests nest objects and arrays at most this deep. Deeper input is refused before zod or a handler walks it: both
 * recurse, and a few thousand levels, a few kilobytes of body, exhaust the stack. */
export const MAX_REQUEST_DEPTH = 128;

/** Whether objects and arrays in `value` nest at most `max` levels; iterative, so any depth is safe to check. */
export function jsonDepthWithin(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [v, depth] = next;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return false;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

/** The UTF-8 length of a string counted in JavaScript, without encoding it (a lone surrogate counts as U+FFFD, 3
 * bytes, as encoders write it). */
export function countUtf8(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

const nodeBuffer = (globalThis as { Buffer?: { byteLength(s: string, enc: 'utf8'): number } }).Buffer;

/** A string's UTF-8 length: Node's native count in services (klog checks megabytes of records with it, in V8's lite
 * mode), the same count in JavaScript in browsers. */
export const utf8Length: (s: string) => number = nodeBuffer ? (s) => nodeBuffer.byteLength(s, 'utf8') : countUtf8;

export function formatIssues(err: z.ZodError, prefix: string): { message: string; issues: { path: string; message: string }[] } {
  const issues = err.issues.map((i) => ({
    path: [prefix, ...i.path.map(String)].filter(Boolean).join('.'),
    message: i.message,
  }));
  const message = issues.map((i) => `${i.path || prefix}: ${i.message}`).join('; ');
  return { message, issues };
}
