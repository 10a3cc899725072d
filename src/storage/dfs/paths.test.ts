import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  PathError,
  type PathErrorReason,
  baseName,
  decodeUrlPath,
  decodeUtf8,
  isSameOrInside,
  joinPath,
  normalizeName,
  normalizePath,
  parentPath,
  splitPath,
} from './paths.ts';

function refused(fn: () => unknown, reason: PathErrorReason, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PathError, `expected a PathError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('normalizePath', () => {
  it('keeps canonical paths as they are', () => {
    for (const p of ['/', '/a', '/a/b/c', '/with space', '/Ünïcödé/日本語/😀', '/a.b/.hidden/..x/x..', '/CaSe']) {
      assert.equal(normalizePath(p), p);
    }
  });

  it('drops one trailing slash, as WebDAV spells collections', () => {
    assert.equal(normalizePath('/a/'), '/a');
    assert.equal(normalizePath('/a/b/'), '/a/b');
  });

  it('stores names in NFC, so NFD (macOS) and NFC (Linux) spellings name one entry', () => {
    const nfd = '/cafe\u0301/e\u0301';
    assert.equal(normalizePath(nfd), '/caf\u00e9/\u00e9');
    assert.equal(normalizePath(nfd), normalizePath('/caf\u00e9/\u00e9'));
  });

  it('is case-sensitive', () => {
    assert.notEqual(normalizePath('/A'), normalizePath('/a'));
  });

  it('refuses relative and empty paths', () => {
    refused(() => normalizePath(''), 'not_absolute', /must start with "\/"/);
    refused(() => normalizePath('a/b'), 'not_absolute');
    refused(() => normalizePath('./a'), 'not_absolute');
  });

  it('refuses empty segments instead of collapsing them', () => {
    refused(() => normalizePath('//'), 'empty_segment', /doubled/);
    refused(() => normalizePath('/a//b'), 'empty_segment');
    refused(() => normalizePath('//a'), 'empty_segment');
    refused(() => normalizePath('/a//'), 'empty_segment');
  });

  it('refuses . and .. anywhere (path traversal)', () => {
    for (const p of ['/..', '/.', '/a/..', '/a/../b', '/a/./b', '/../etc/passwd', '/a/../']) {
      refused(() => normalizePath(p), 'dot_segment', /is not allowed as a name/);
    }
  });

  it('refuses NUL, C0, DEL and C1 control characters and names the code point', () => {
    refused(() => normalizePath('/a\0b'), 'control_character', /U\+0000/);
    refused(() => normalizePath('/a\tb'), 'control_character', /U\+0009/);
    refused(() => normalizePath('/a\nb'), 'control_character', /U\+000A/);
    refused(() => normalizePath('/a\x7fb'), 'control_character', /U\+007F/);
    refused(() => normalizePath('/a\u0085b'), 'control_character', /U\+0085/);
    refused(() => normalizePath('/a\u009fb'), 'control_character', /U\+009F/);
  });

  it('refuses U+FFFE and U+FFFF, which XML cannot carry, and names them', () => {
    refused(() => normalizePath('/a\ufffeb'), 'noncharacter', /U\+FFFE/);
    refused(() => normalizePath('/dir/\uffff'), 'noncharacter', /U\+FFFF/);
    refused(() => decodeUrlPath('/a%EF%BF%BEb.txt'), 'noncharacter');
    assert.equal(normalizePath('/a\ufffdb'), '/a\ufffdb', 'U+FFFD, the replacement character, is a character');
  });

  it('refuses lone surrogates (not valid Unicode) but takes surrogate pairs', () => {
    refused(() => normalizePath('/a\ud800'), 'invalid_utf8', /lone UTF-16 surrogate/);
    refused(() => normalizePath('/\udc00b'), 'invalid_utf8');
    assert.equal(normalizePath('/\ud83d\ude00'), '/😀');
  });

  it('refuses what is not a string', () => {
    refused(() => normalizePath(undefined), 'not_a_string');
    refused(() => normalizePath(42), 'not_a_string');
    refused(() => normalizePath(null), 'not_a_string');
  });

  it(`limits names to ${MAX_NAME_BYTES} UTF-8 bytes`, () => {
    assert.equal(normalizePath(`/${'a'.repeat(255)}`), `/${'a'.repeat(255)}`);
    refused(() => normalizePath(`/${'a'.repeat(256)}`), 'name_too_long', /256 bytes in UTF-8; the limit is 255/);
    assert.ok(normalizePath(`/${'é'.repeat(127)}`));
    refused(() => normalizePath(`/${'é'.repeat(128)}`), 'name_too_long');
    refused(() => normalizePath(`/${'😀'.repeat(64)}`), 'name_too_long');
    assert.ok(normalizePath(`/${'😀'.repeat(63)}`));
  });

  it('measures a name after normalisation, which can lengthen it', () => {
    // U+0958 is excluded from composition: NFC turns its 3 bytes into U+0915 U+093C, 6 bytes.
    const name = '\u0958'.repeat(85);
    assert.equal(Buffer.byteLength(name), 255);
    refused(() => normalizePath(`/${name}`), 'name_too_long', /510 bytes/);
  });

  it(`limits paths to ${MAX_PATH_BYTES} UTF-8 bytes`, () => {
    const seg = 'x'.repeat(255);
    const atLimit = `/${Array(15).fill(seg).join('/')}/${'y'.repeat(MAX_PATH_BYTES - 15 * 256 - 1)}`;
    assert.equal(Buffer.byteLength(atLimit), MAX_PATH_BYTES);
    assert.equal(normalizePath(atLimit), atLimit);
    assert.equal(normalizePath(`${atLimit}/`), atLimit);
    refused(() => normalizePath(`${atLimit.slice(0, -1)}/y`), 'path_too_long', /4097 bytes/);
    refused(() => normalizePath(`/${'a/'.repeat(100_000)}`), 'path_too_long');
  });

  it('measures a path after NFC, so a macOS (NFD) spelling of a path within the limit is taken', () => {
    // A Hangul syllable is 3 bytes in NFC and 3 jamo of 3 bytes in NFD.
    const atLimit = `/${Array(16).fill('한'.repeat(85)).join('/')}`;
    assert.equal(Buffer.byteLength(atLimit), MAX_PATH_BYTES);
    const nfd = atLimit.normalize('NFD');
    assert.ok(Buffer.byteLength(nfd) > 3 * MAX_PATH_BYTES - 100);
    assert.equal(normalizePath(nfd), atLimit);
    assert.equal(normalizePath(`${nfd}/`), atLimit);
    assert.equal(decodeUrlPath(encodeURI(nfd)), atLimit);
    const over = `${nfd.slice(0, nfd.lastIndexOf('/'))}/${'한'.repeat(84).normalize('NFD')}/abc`;
    refused(() => normalizePath(over), 'path_too_long', /4097 bytes/);
    // Past three times the limit no NFC form could fit: refused before normalising.
    refused(() => normalizePath(`/${'a'.repeat(3 * MAX_PATH_BYTES + 1)}`), 'path_too_long', /longer than 12289 bytes/);
  });

  it('keeps messages short for huge inputs', () => {
    try {
      normalizePath(`/${'a'.repeat(10_000)}`);
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof PathError);
      assert.ok(err.message.length < 200, err.message);
    }
  });
});

describe('normalizeName', () => {
  it('normalises one name', () => {
    assert.equal(normalizeName('e\u0301'), '\u00e9');
    assert.equal(normalizeName('a.b'), 'a.b');
  });

  it('refuses slashes, empty names, dot names and control characters', () => {
    refused(() => normalizeName('a/b'), 'slash_in_name');
    refused(() => normalizeName(''), 'empty_segment');
    refused(() => normalizeName('..'), 'dot_segment');
    refused(() => normalizeName('a\0'), 'control_character');
    refused(() => normalizeName('x'.repeat(256)), 'name_too_long');
    refused(() => normalizeName('\ud800'), 'invalid_utf8');
  });
});

describe('decodeUtf8', () => {
  it('decodes well-formed UTF-8, keeping a leading BOM as a character', () => {
    assert.equal(decodeUtf8(Buffer.from('/été/😀')), '/été/😀');
    assert.equal(decodeUtf8(Uint8Array.of(0xef, 0xbb, 0xbf, 0x61)), '\ufeffa');
  });

  it('refuses ill-formed UTF-8 instead of replacing it', () => {
    const bad: Array<[string, number[]]> = [
      ['a stray continuation byte', [0x2f, 0x80]],
      ['0xff', [0x2f, 0xff]],
      ['an overlong "/"', [0xc0, 0xaf]],
      ['an overlong "."', [0xe0, 0x80, 0xae]],
      ['an encoded surrogate', [0xed, 0xa0, 0x80]],
      ['a truncated sequence', [0x2f, 0xe2, 0x82]],
      ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ];
    for (const [what, bytes] of bad) {
      assert.throws(() => decodeUtf8(Uint8Array.from(bytes)), (err: unknown) => err instanceof PathError && err.reason === 'invalid_utf8', what);
    }
  });
});

describe('decodeUrlPath', () => {
  it('percent-decodes, then normalises', () => {
    assert.equal(decodeUrlPath('/a%20b/c'), '/a b/c');
    assert.equal(decodeUrlPath('/caf%C3%A9/'), '/café');
    assert.equal(decodeUrlPath('/cafe%CC%81'), '/café');
    assert.equal(decodeUrlPath('/a+b'), '/a+b');
    assert.equal(decodeUrlPath('/%F0%9F%98%80'), '/😀');
    assert.equal(decodeUrlPath('/raw-é-😀'), '/raw-é-😀');
  });

  it('cannot smuggle traversal or NUL through escapes', () => {
    refused(() => decodeUrlPath('/%2e%2e/etc'), 'dot_segment');
    refused(() => decodeUrlPath('/a/%2E'), 'dot_segment');
    refused(() => decodeUrlPath('/a%2F..%2Fb'), 'dot_segment');
    refused(() => decodeUrlPath('/a%00b'), 'control_character');
    assert.equal(decodeUrlPath('/a%2Fb'), '/a/b');
  });

  it('refuses malformed escapes and ill-formed UTF-8', () => {
    refused(() => decodeUrlPath('/a%'), 'bad_percent_encoding', /offset 2/);
    refused(() => decodeUrlPath('/a%2'), 'bad_percent_encoding');
    refused(() => decodeUrlPath('/a%zz'), 'bad_percent_encoding');
    refused(() => decodeUrlPath('/%C3%28'), 'invalid_utf8');
    refused(() => decodeUrlPath('/%FF'), 'invalid_utf8');
    refused(() => decodeUrlPath('/%C0%AF'), 'invalid_utf8');
    refused(() => decodeUrlPath('/%ED%A0%80'), 'invalid_utf8');
  });
});

describe('path helpers', () => {
  it('split, parent, base name and join', () => {
    assert.deepEqual(splitPath('/'), []);
    assert.deepEqual(splitPath('/a/b'), ['a', 'b']);
    assert.equal(parentPath('/'), null);
    assert.equal(parentPath('/a'), '/');
    assert.equal(parentPath('/a/b'), '/a');
    assert.equal(baseName('/'), '');
    assert.equal(baseName('/a/b'), 'b');
    assert.equal(joinPath('/', 'a'), '/a');
    assert.equal(joinPath('/a', 'e\u0301'), '/a/\u00e9');
    refused(() => joinPath('/a', '..'), 'dot_segment');
    refused(() => joinPath('/a', 'b/c'), 'slash_in_name');
  });

  it('isSameOrInside compares whole names', () => {
    assert.ok(isSameOrInside('/a', '/a'));
    assert.ok(isSameOrInside('/a/b', '/a'));
    assert.ok(isSameOrInside('/a', '/'));
    assert.ok(!isSameOrInside('/ab', '/a'));
    assert.ok(!isSameOrInside('/a', '/a/b'));
  });
});
