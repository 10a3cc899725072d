import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import type { DfsEntry } from '../../../lib/api/dfs.ts';
import {
  NAME_MAX_BYTES, PART_BYTES, checkMoveTarget, checkName, crumbs, explainFileError, fileUrl, fitWithin, folderFromQuery, folderUrl, nextPart,
  planUpload, previewOf, resumeKey, rootOf, sortEntries, thumbKind,
} from './model.ts';

const entry = (path: string, type: 'file' | 'dir' = 'file', size = 10): DfsEntry => ({
  path, type, size, mtime: 0, created: 0, owner: 'alice', content_id: type === 'file' ? `sha256:${'a'.repeat(64)}` : null,
});

describe('files model: where the page goes', () => {
  it('knows the two roots and nothing else', () => {
    assert.equal(rootOf('/home/alice', 'alice'), 'home');
    assert.equal(rootOf('/home/alice/x/y', 'alice'), 'home');
    assert.equal(rootOf('/home/alicex', 'alice'), null);
    assert.equal(rootOf('/home/bob', 'alice'), null);
    assert.equal(rootOf('/public/a', 'alice'), 'public');
    assert.equal(rootOf('/', 'alice'), null);
  });

  it('draws breadcrumbs from the root down', () => {
    assert.deepEqual(crumbs('/home/alice/Photos/2024', 'alice'), [
      { path: '/home/alice', root: 'home', name: 'alice' },
      { path: '/home/alice/Photos', name: 'Photos' },
      { path: '/home/alice/Photos/2024', name: '2024' },
    ]);
    assert.deepEqual(crumbs('/public', 'alice'), [{ path: '/public', root: 'public', name: 'public' }]);
    assert.deepEqual(crumbs('/home/bob', 'alice'), []);
  });

  it('puts the folder in the query and reads back only folders it may open', () => {
    assert.equal(folderUrl('/home/alice', 'alice'), '/files');
    const url = folderUrl('/public/a b/文件', 'alice');
    assert.equal(folderFromQuery(url.slice(url.indexOf('?')), 'alice'), '/public/a b/文件');
    assert.equal(folderFromQuery('', 'alice'), '/home/alice');
    for (const bad of ['?dir=/home/bob', '?dir=/public/../home/bob', '?dir=public', '?dir=/public//x', '?dir=/']) assert.equal(folderFromQuery(bad, 'alice'), null, bad);
  });

  it('encodes each segment of a file URL and names a kept version in the query', () => {
    assert.equal(fileUrl('home', '/home/alice/a b#?.txt'), '/kapi/dfs/files/home/home/alice/a%20b%23%3F.txt');
    assert.equal(fileUrl('home', '/public/x', '12'), '/kapi/dfs/files/home/public/x?version=12');
  });
});

describe('files model: names', () => {
  it('says what is wrong with a name, or nothing', () => {
    const key = (n: string, taken: string[] = [], own?: string) => checkName(n, '/home/alice', taken, own)?.key ?? null;
    assert.equal(key('Photos'), null);
    assert.equal(key('照片 2024'), null);
    assert.equal(key(''), 'files.name.empty');
    assert.equal(key('   '), 'files.name.empty');
    assert.equal(key('a'.repeat(NAME_MAX_BYTES)), null);
    assert.equal(key('a'.repeat(NAME_MAX_BYTES + 1)), 'files.name.too_long');
    assert.equal(key('文'.repeat(86)), 'files.name.too_long', '86 characters of 3 bytes each');
    for (const bad of ['.', '..', 'a/b', 'a\\b', 'tab\there', 'nul\u0000']) assert.equal(key(bad), 'files.name.invalid', JSON.stringify(bad));
    assert.equal(key(' lead'), 'files.name.spaces');
    assert.equal(key('Photos', ['Photos']), 'files.name.taken');
    assert.equal(key('photos', ['Photos']), null, 'names differing in case are different');
    assert.equal(key('Photos', ['Photos'], 'Photos'), null, 'a rename may keep its own name in the list');
    assert.equal(key('e\u0301', ['\u00e9']), 'files.name.taken', 'one spelling per name (NFC)');
    assert.equal(checkName('x', `/${'d'.repeat(4094)}`, [])?.key, 'files.name.path_too_long');
  });

  it('checks a move destination', () => {
    const key = (to: string, from = '/home/alice/Photos') => checkMoveTarget(to, from, 'alice')?.key ?? null;
    assert.equal(key('/public'), null);
    assert.equal(key('/home/alice/Docs/'), null);
    assert.equal(key(''), 'files.move.empty');
    assert.equal(key('public'), 'files.move.invalid');
    assert.equal(key('/home/alice/../bob'), 'files.move.invalid');
    assert.equal(key('/home/bob'), 'files.move.outside');
    assert.equal(key('/home/alice/Photos/2024'), 'files.move.into_itself');
    assert.equal(key('/home/alice'), 'files.move.same');
  });
});

describe('files model: listing and previews', () => {
  it('sorts folders first, then by name with numbers as numbers', () => {
    const sorted = sortEntries([entry('/p/b10.txt'), entry('/p/Zed', 'dir'), entry('/p/b9.txt'), entry('/p/a', 'dir')], 'en');
    assert.deepEqual(sorted.map((e) => e.path), ['/p/a', '/p/Zed', '/p/b9.txt', '/p/b10.txt']);
  });

  it('chooses a preview and its type from the extension, never a type a browser would run', () => {
    assert.deepEqual(previewOf('IMG_1.JPG'), { kind: 'image', mime: 'image/jpeg' });
    assert.deepEqual(previewOf('clip.webm'), { kind: 'video', mime: 'video/webm' });
    assert.deepEqual(previewOf('song.mp3'), { kind: 'audio', mime: 'audio/mpeg' });
    assert.deepEqual(previewOf('doc.pdf'), { kind: 'pdf', mime: 'application/pdf' });
    assert.deepEqual(previewOf('page.html'), { kind: 'text', mime: 'text/plain' });
    assert.deepEqual(previewOf('notes.md'), { kind: 'text', mime: 'text/plain' });
    assert.equal(previewOf('archive.zip'), null);
    assert.equal(previewOf('.bashrc'), null);
    assert.equal(previewOf('README'), null);
  });

  it('draws thumbnails of images and videos within a size, and scales without enlarging', () => {
    assert.equal(thumbKind(entry('/a.png')), 'image');
    assert.equal(thumbKind(entry('/a.mp4')), 'video');
    assert.equal(thumbKind(entry('/a.png', 'file', 0)), null);
    assert.equal(thumbKind(entry('/a.png', 'file', 33 * 1024 * 1024)), null);
    assert.equal(thumbKind(entry('/a.txt')), null);
    assert.equal(thumbKind(entry('/a.png', 'dir')), null);
    assert.deepEqual(fitWithin(4000, 3000, 160), { width: 160, height: 120 });
    assert.deepEqual(fitWithin(100, 400, 160), { width: 40, height: 160 });
    assert.deepEqual(fitWithin(50, 20, 160), { width: 50, height: 20 });
    assert.deepEqual(fitWithin(0, 20, 160), { width: 0, height: 0 });
  });
});

describe('files model: uploads', () => {
  it('cuts an upload into parts and continues from where the zone stands', () => {
    const size = 2 * PART_BYTES + 5;
    assert.deepEqual(nextPart(0, size), { start: 0, end: PART_BYTES });
    assert.deepEqual(nextPart(7, size), { start: 7, end: PART_BYTES + 7 });
    assert.deepEqual(nextPart(PART_BYTES + 7, size), { start: PART_BYTES + 7, end: size });
    assert.deepEqual(nextPart(2 * PART_BYTES, size), { start: 2 * PART_BYTES, end: size });
    assert.equal(nextPart(size, size), null);
    assert.equal(nextPart(0, 0), null, 'an empty file has no parts; it is committed at once');
  });

  it('plans a folder upload: parents before children, every file in its place, bad names refused', () => {
    const plan = planUpload([
      { name: 'b.jpg', relative: 'Trip/day 2/b.jpg', size: 1, lastModified: 1 },
      { name: 'a.jpg', relative: 'Trip/a.jpg', size: 1, lastModified: 1 },
      { name: 'c.txt', relative: 'Trip/day 1/c.txt', size: 1, lastModified: 1 },
    ], '/home/alice');
    assert.deepEqual(plan.folders, ['/home/alice/Trip', '/home/alice/Trip/day 1', '/home/alice/Trip/day 2']);
    assert.deepEqual(plan.files, [
      { index: 0, path: '/home/alice/Trip/day 2/b.jpg' },
      { index: 1, path: '/home/alice/Trip/a.jpg' },
      { index: 2, path: '/home/alice/Trip/day 1/c.txt' },
    ]);
    assert.deepEqual(plan.refused, []);
    const plain = planUpload([{ name: 'x.bin', relative: '', size: 1, lastModified: 1 }], '/public');
    assert.deepEqual(plain, { folders: [], files: [{ index: 0, path: '/public/x.bin' }], refused: [] });
    const bad = planUpload([{ name: 'a'.repeat(300), relative: '', size: 1, lastModified: 1 }], '/public');
    assert.equal(bad.files.length, 0);
    assert.equal(bad.refused[0]?.problem.key, 'files.name.too_long');
  });

  it('knows an upload again by destination, size and modification time', () => {
    assert.equal(resumeKey('home', '/public/a', { size: 5, lastModified: 9 }), resumeKey('home', '/public/a', { size: 5, lastModified: 9 }));
    assert.notEqual(resumeKey('home', '/public/a', { size: 5, lastModified: 9 }), resumeKey('home', '/public/a', { size: 6, lastModified: 9 }));
  });

  it('puts refusals into words', () => {
    assert.equal(explainFileError(new KrpcError('FAILED_PRECONDITION', 'quota', { reason: 'QUOTA_EXCEEDED' })).key, 'files.error.quota');
    assert.equal(explainFileError(new KrpcError('ALREADY_EXISTS', 'x')).key, 'files.name.taken');
    assert.equal(explainFileError(new KrpcError('PERMISSION_DENIED', 'x')).key, 'files.error.denied');
    assert.equal(explainFileError(new KrpcError('NOT_FOUND', 'x', { reason: 'MOVE_TARGET' })).key, 'files.move.missing');
    assert.equal(explainFileError(new KrpcError('UNAVAILABLE', 'x')).key, 'files.error.unavailable');
    assert.equal(explainFileError(new TypeError('fetch failed')).key, 'files.error.network');
    assert.deepEqual(explainFileError(new KrpcError('INTERNAL', 'boom')), { key: 'files.error.other', params: { message: 'boom' } });
  });
});
