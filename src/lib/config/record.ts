// Reading a JSON record from system-config against its schema. Every reader, kernel or browser, gets the same answer
// for the same bytes: the value, or a fallback and the reason the stored record was not used. Free of Node: the
// system UI bundles it.
import type { z } from 'zod';

export interface ParsedRecord<T> {
  /** The record, or the fallback when it is absent or invalid. */
  value: T;
  /** Why a stored record was not used, or null (absent counts as fine). */
  problem: string | null;
}

/** Absent gives `fallback`; a record that is not JSON or breaks the schema gives `fallback` and says why, so a reader
 * can show the problem without acting on a bad value. */
export function readRecord<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: string | null | undefined, fallback: T): ParsedRecord<T>;
export function readRecord<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: string | null | undefined, fallback: null): ParsedRecord<T | null>;
export function readRecord<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: string | null | undefined, fallback: T | null): ParsedRecord<T | null> {
  if (value === null || value === undefined) return { value: fallback, problem: null };
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return { value: fallback, problem: 'not JSON' };
  }
  const r = schema.safeParse(raw);
  if (r.success) return { value: r.data, problem: null };
  // A schema's own message may already name its field ("time_zone: empty"): the path is not repeated then.
  const issues = r.error.issues.map((i) => {
    const path = i.path.join('.');
    return !path || i.message.startsWith(`${path}: `) ? i.message : `${path}: ${i.message.replace(/^[a-z_]+: /, '')}`;
  });
  return { value: fallback, problem: issues.join('; ') };
}
