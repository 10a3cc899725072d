// Listing every key under a prefix of system-config, however many there are. A listing answers one page (at most
// `limit` keys) and cannot start after a key; it says whether the store held more (`more`), counted before the
// caller's read filter, so that a caller who may read only some keys can tell a cut listing from a whole one.

/** Every character a system-config key may hold, in the order listings sort them (code units). */
const KEY_CHARS = '-./0123456789:@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';

/** system-config's largest page. */
export const LIST_PAGE_MAX = 10_000;

export type ListPage<E extends { key: string }> = (params: { prefix: string; limit: number; keys_only: boolean }) => Promise<{ entries: E[]; more: boolean }>;

export interface ListAllOptions {
  keysOnly?: boolean;
  /** The most a listing answers; system-config's limit unless a test makes pages small. */
  pageSize?: number;
}

/**
 * Every entry under `prefix` the caller may read, sorted. A page that stopped short (`more`) is listed again one
 * character narrower, under each character a key can continue with: the usual case costs one call, and only the
 * crowded parts of the key space are split further.
 */
export async function listAll<E extends { key: string }>(list: ListPage<E>, prefix: string, opts: ListAllOptions = {}): Promise<E[]> {
  const out: E[] = [];
  await collect(list, prefix, { keysOnly: opts.keysOnly ?? false, pageSize: opts.pageSize ?? LIST_PAGE_MAX }, out);
  return out;
}

async function collect<E extends { key: string }>(list: ListPage<E>, prefix: string, opts: Required<ListAllOptions>, out: E[]): Promise<void> {
  const segment = prefix.slice(prefix.lastIndexOf('/') + 1);
  // system-config refuses a prefix ending in a "." or ".." segment, yet keys may go on from it ("a/.b"): such a
  // prefix is split without being listed. No key equals it, since keys have no dot segments.
  const listable = segment !== '.' && segment !== '..';
  if (listable) {
    const { entries, more } = await list({ prefix, limit: opts.pageSize, keys_only: opts.keysOnly });
    if (!more) {
      out.push(...entries);
      return;
    }
    // The prefix itself, when it is a key, sorts first and belongs to no narrower prefix.
    if (entries[0]?.key === prefix) out.push(entries[0]);
  }
  for (const c of KEY_CHARS) {
    // Keys have no empty and no dot segments.
    if (c === '/' && (segment === '' || !listable)) continue;
    await collect(list, prefix + c, opts, out);
  }
}
