// Volume paths (docs/dcfs.md, "Volume metadata"): what a name or a path inside a volume may be, and its one canonical
// spelling. Every path reaches the metadata through normalizePath, so two spellings can never name two entries, and
// RBAC (which matches `obj://dfs/<volume>/<path>` as a string) sees the same path the metadata stores.
//
// The policy, and why:
//  - Absolute, `/`-separated; `/` is the root. One trailing `/` is dropped, because WebDAV spells collections that way.
//  - Empty segments (`/a//b`) are refused rather than collapsed: a doubled slash is a caller's joining bug, and
//    collapsing it would let two strings name one entry.
//  - `.` and `..` are refused, never resolved: a path names an entry directly, so there is nothing to climb out of.
//  - Control characters (C0, DEL, C1) are refused: they break listings, terminals, XML and SMB.
//  - Names are stored in Unicode NFC. macOS clients send NFD and Linux ones NFC; normalising makes both name one file
//    (refusing NFD would lock macOS clients out). Names that differ only in normalisation are therefore one name.
//  - At most 255 UTF-8 bytes per name and 4096 per path, the limits of Linux file systems, so a volume can always be
//    exported through FUSE or Samba, measured after normalisation.
//  - Strings must be well-formed Unicode (no lone surrogates), and bytes well-formed UTF-8: neither can be stored
//    or sent back faithfully.

export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4096;
/** The longest path text looked at: a path of MAX_PATH_BYTES in NFC, decomposed (NFD at most triples UTF-8), with a
 * trailing `/`. */
export const MAX_INPUT_PATH_BYTES = 3 * MAX_PATH_BYTES + 1;

export type PathErrorReason =
  | 'not_a_string'
  | 'not_absolute'
  | 'empty_segment'
  | 'dot_segment'
  | 'slash_in_name'
  | 'control_character'
  | 'noncharacter'
  | 'name_too_long'
  | 'path_too_long'
  | 'invalid_utf8'
  | 'bad_percent_encoding';

export class PathError extends Error {
  readonly reason: PathErrorReason;
  /** What was refused, shortened so that a huge input does not make a huge message. */
  readonly input: string;

  constructor(reason: PathErrorReason, input: string, detail: string) {
    const shown = input.length > 80 ? `${input.slice(0, 80)}…` : input;
    super(`invalid path ${JSON.stringify(shown)}: ${detail}`);
    this.name = 'PathError';
    this.reason = reason;
    this.input = shown;
  }
}

const encoder = new TextEncoder();
/** UTF-8 length, counted without making the bytes (an encoder allocates them): every path and name of every request
 * passes here. */
const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

// C0 controls, DEL and C1 controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
// With the u flag a well-formed surrogate pair is one code point, so only lone surrogates match.
const LONE_SURROGATE = /\p{Cs}/u;
// U+FFFE and U+FFFF are not characters XML 1.0 may carry: a name holding one would make every WebDAV listing of its
// folder malformed XML, which clients refuse whole.
const NOT_XML = /[\ufffe\uffff]/u;

function checkSegment(segment: string, input: string): string {
  if (segment === '') throw new PathError('empty_segment', input, 'empty name (a doubled "/")');
  if (segment === '.' || segment === '..') throw new PathError('dot_segment', input, `"${segment}" is not allowed as a name`);
  const bad = CONTROL.exec(segment);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).padStart(4, '0');
    throw new PathError('control_character', input, `control character U+${code.toUpperCase()} in a name`);
  }
  const nonchar = NOT_XML.exec(segment);
  if (nonchar) {
    throw new PathError('noncharacter', input, `U+${nonchar[0].codePointAt(0)!.toString(16).toUpperCase()} is not a character a name may hold`);
  }
  const name = segment.normalize('NFC');
  const bytes = utf8Bytes(name);
  if (bytes > MAX_NAME_BYTES) {
    throw new PathError('name_too_long', input, `a name is ${bytes} bytes in UTF-8; the limit is ${MAX_NAME_BYTES}`);
  }
  return name;
}

function checkString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new PathError('not_a_string', String(value), `${what} must be a string`);
  if (LONE_SURROGATE.test(value)) throw new PathError('invalid_utf8', value, 'lone UTF-16 surrogate (not valid Unicode)');
  return value;
}

/** The canonical form of a volume path, or a PathError naming what is wrong with it. */
export function normalizePath(path: unknown): string {
  const p = checkString(path, 'a path');
  if (!p.startsWith('/')) throw new PathError('not_absolute', p, 'must start with "/"');
  // Bounded before normalising so that a huge input costs nothing, with room for decomposed input: only the length
  // after NFC counts (checked below), and NFC shrinks an NFD path up to 3 times (a Hangul syllable of 3 bytes is sent
  // by macOS as 3 jamo of 3 bytes each).
  if (utf8Bytes(p) > MAX_INPUT_PATH_BYTES) {
    throw new PathError('path_too_long', p, `longer than ${MAX_INPUT_PATH_BYTES} bytes in UTF-8, more than any path of ${MAX_PATH_BYTES} bytes in NFC`);
  }
  if (p === '/') return '/';
  const body = p.endsWith('/') ? p.slice(1, -1) : p.slice(1);
  const out = `/${body.split('/').map((s) => checkSegment(s, p)).join('/')}`;
  const bytes = utf8Bytes(out);
  if (bytes > MAX_PATH_BYTES) {
    throw new PathError('path_too_long', p, `${bytes} bytes in UTF-8; the limit is ${MAX_PATH_BYTES}`);
  }
  return out;
}

/** The canonical form of one name (a path segment). */
export function normalizeName(name: unknown): string {
  const n = checkString(name, 'a name');
  if (n.includes('/')) throw new PathError('slash_in_name', n, 'a name cannot contain "/"');
  return checkSegment(n, n);
}

/** Strict UTF-8 decoding of raw path bytes (a FUSE or SMB name, a percent-decoded URL): ill-formed input is refused,
 * never replaced with U+FFFD, so a byte string can never alias another name. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new PathError('invalid_utf8', Buffer.from(bytes).toString('latin1'), 'the bytes are not well-formed UTF-8');
  }
}

/** A URL path (as in a WebDAV request line or href) to a canonical volume path: percent-escapes decoded to bytes,
 * the bytes decoded as strict UTF-8, then normalised. `%2F` becomes a separator and `%2E%2E` a refused `..`, so an
 * escape can never smuggle traversal past the checks. */
export function decodeUrlPath(encoded: string): string {
  const s = checkString(encoded, 'a URL path');
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new PathError('bad_percent_encoding', s, `"%" at offset ${i} is not followed by two hex digits`);
      }
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      // Raw non-ASCII in a URL path: take the character's own UTF-8 bytes (a surrogate pair is one code point).
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...encoder.encode(ch));
      i += ch.length - 1;
    }
  }
  return normalizePath(decodeUtf8(Uint8Array.from(bytes)));
}

/** The names of a canonical path, root first; `[]` for `/`. */
export function splitPath(normalized: string): string[] {
  return normalized === '/' ? [] : normalized.slice(1).split('/');
}

/** The parent of a canonical path; null for `/`. */
export function parentPath(normalized: string): string | null {
  if (normalized === '/') return null;
  const i = normalized.lastIndexOf('/');
  return i === 0 ? '/' : normalized.slice(0, i);
}

/** The last name of a canonical path; `''` for `/`. */
export function baseName(normalized: string): string {
  return normalized.slice(normalized.lastIndexOf('/') + 1);
}

/** A canonical directory path and a name to the canonical child path (the name is checked and normalised). */
export function joinPath(dir: string, name: string): string {
  const child = `${dir === '/' ? '' : dir}/${normalizeName(name)}`;
  return normalizePath(child);
}

/** Whether canonical `path` is `ancestor` itself or lies below it. */
export function isSameOrInside(path: string, ancestor: string): boolean {
  return ancestor === '/' || path === ancestor || path.startsWith(`${ancestor}/`);
}
