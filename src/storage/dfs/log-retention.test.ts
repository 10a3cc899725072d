// What a volume's copies keep of the metadata log: the primary by its followers' positions, the window and the
// recent entries it always keeps; a follower by what its primary keeps; and the positions across a restart.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FollowerPosition, type RetentionConfig, FollowerPositions, followerTruncation, primaryTruncation } from './log-retention.ts';

const HOUR = 3_600_000;
const cfg: RetentionConfig = { windowMs: 24 * HOUR, keepEntries: 100 };
const NOW = 1_700_000_000_000;

describe('log retention (log-retention.ts)', () => {
  describe('primaryTruncation', () => {
    const through = (positions: Record<string, FollowerPosition>, followers = Object.keys(positions), lastSeq = 1000, logStart = 0) =>
      primaryTruncation({ lastSeq, logStart, followers, positions: new Map(Object.entries(positions)), now: NOW }, cfg);
    const heard = (seq: number | null, ago = 0): FollowerPosition => ({ seq, at: NOW - ago });

    it('with no followers, keeps only the recent entries', () => {
      assert.equal(through({}), 900);
    });

    it('keeps every entry after the furthest-behind follower\'s position', () => {
      assert.equal(through({ st2: heard(500), st3: heard(700) }), 500);
      assert.equal(through({ st2: heard(999), st3: heard(950) }), 900, 'and the recent entries, however far on they all are');
      assert.equal(through({ st2: heard(0) }), 0, 'a follower fetching the whole log holds all of it');
    });

    it('a follower silent for longer than the window holds nothing back; one just within it still does', () => {
      assert.equal(through({ st2: heard(100, cfg.windowMs + 1), st3: heard(800) }), 800);
      assert.equal(through({ st2: heard(100, cfg.windowMs), st3: heard(800) }), 100);
    });

    it('a follower not heard from yet holds the whole log, until its window runs out', () => {
      assert.equal(through({ st2: heard(null), st3: heard(800) }, undefined, 1000, 40), 40);
      assert.equal(through({ st2: heard(null, cfg.windowMs + 1), st3: heard(800) }, undefined, 1000, 40), 800);
      assert.equal(through({ st3: heard(800) }, ['st2', 'st3'], 1000, 40), 40, 'nor does one with no record at all');
    });

    it('positions of nodes that are no followers of the volume count for nothing', () => {
      assert.equal(through({ st2: heard(10), st3: heard(800) }, ['st3']), 800);
    });

    it('never answers less than what is already dropped, nor drops a log shorter than what it keeps', () => {
      assert.equal(through({ st2: heard(300) }, undefined, 1000, 600), 600);
      assert.equal(through({}, [], 60, 0), 0);
    });
  });

  describe('followerTruncation', () => {
    it('keeps what its primary keeps, and its own recent entries', () => {
      assert.equal(followerTruncation({ lastSeq: 1000, logStart: 0, primaryLogStart: 400 }, cfg), 400);
      assert.equal(followerTruncation({ lastSeq: 450, logStart: 0, primaryLogStart: 400 }, cfg), 350);
      assert.equal(followerTruncation({ lastSeq: 1000, logStart: 0, primaryLogStart: null }, cfg), 0, 'nothing while the primary has not said');
      assert.equal(followerTruncation({ lastSeq: 1000, logStart: 500, primaryLogStart: 400 }, cfg), 500);
    });
  });

  describe('FollowerPositions', () => {
    let dir: string;
    let file: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'log-retention-'));
      file = join(dir, 'followers.json');
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('tracks the volume\'s followers: a new one not heard from as of when it is first seen, a former one forgotten', () => {
      const p = new FollowerPositions(file);
      p.track(['st2', 'st3'], NOW);
      p.heard('st2', 42, NOW + 5);
      p.track(['st2', 'st4'], NOW + 10);
      assert.deepEqual(Object.fromEntries(p.positions), { st2: { seq: 42, at: NOW + 5 }, st4: { seq: null, at: NOW + 10 } });
    });

    it('after a restart, holds what the followers needed when it last saved, and their silence goes on from then', () => {
      const p = new FollowerPositions(file);
      p.track(['st2', 'st3'], NOW);
      p.heard('st2', 500, NOW);
      p.heard('st3', 700, NOW);
      p.save();
      const again = new FollowerPositions(file);
      assert.equal(again.problem, null);
      const point = (q: FollowerPositions, now: number) =>
        primaryTruncation({ lastSeq: 2000, logStart: 0, followers: ['st2', 'st3'], positions: q.positions, now }, cfg);
      assert.equal(point(again, NOW + HOUR), 500, 'st2 still needs what follows 500');
      assert.equal(point(again, NOW + cfg.windowMs + 1), 1900, 'both silent past the window, counted from before the restart');
    });

    it('saves only when something changed, durably and whole', () => {
      const p = new FollowerPositions(file);
      p.save();
      assert.throws(() => readFileSync(file), /ENOENT/);
      p.heard('st2', 1, NOW);
      p.save();
      assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { st2: { seq: 1, at: NOW } });
    });

    it('a file that cannot be read counts every follower as not heard from, which keeps the whole log', () => {
      writeFileSync(file, '{"st2": {"seq": "ten"}}');
      const p = new FollowerPositions(file);
      assert.match(p.problem!, /followers\.json/);
      p.track(['st2'], NOW);
      assert.equal(primaryTruncation({ lastSeq: 1000, logStart: 7, followers: ['st2'], positions: p.positions, now: NOW }, cfg), 7);
    });
  });
});
