import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { uploadCommitTimeoutMs } from './dfs.ts';

describe('uploadCommitTimeoutMs', () => {
  it('waits a minute for an empty upload and a second more for every 4 MiB', () => {
    assert.equal(uploadCommitTimeoutMs(0), 60_000);
    assert.equal(uploadCommitTimeoutMs(4 * 1024 * 1024), 61_000);
    assert.equal(uploadCommitTimeoutMs(10 * 1024 ** 3), 60_000 + 2560_000, '10 GiB: 44 minutes and a bit');
    assert.equal(uploadCommitTimeoutMs(1), 60_001, 'a part of a second rounds up');
  });
});
