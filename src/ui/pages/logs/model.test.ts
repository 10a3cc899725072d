// The logs page's rules: search form -> query, times in a time zone, follow's parameters, and merging entries.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMPTY_FILTERS, MAX_SHOWN, TAIL_WAIT_MS, buildQuery, epochToWallTime, fieldsText, followBlocked, levelTone, mergeEntries, namesUnder, tailParams,
  wallTimeToEpoch,
} from './model.ts';

const NOW = Date.UTC(2026, 10, 24, 9, 30);

describe('logs model', () => {
  it('reads typed times in the zone\'s time zone, whatever the browser\'s', () => {
    assert.equal(wallTimeToEpoch('2026-11-24T17:30', 'Asia/Shanghai'), NOW);
    assert.equal(wallTimeToEpoch('2026-11-24T09:30', 'UTC'), NOW);
    assert.equal(wallTimeToEpoch('2026-11-24T04:30', 'America/New_York'), NOW);
    assert.equal(wallTimeToEpoch('2026-11-24T17:30:15', 'Asia/Shanghai'), NOW + 15_000);
    assert.equal(epochToWallTime(NOW, 'Asia/Shanghai'), '2026-11-24T17:30');
    assert.equal(epochToWallTime(NOW, 'Europe/Paris'), '2026-11-24T10:30');
    for (const bad of ['', '2026-11-24', '2026-13-01T00:00', '2026-02-30T10:00', '2026-11-24T24:00', 'yesterday']) {
      assert.equal(wallTimeToEpoch(bad, 'UTC'), null, bad);
    }
  });

  it('reads times around daylight saving as clocks do', () => {
    // Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and reads as 03:30 CEST.
    assert.equal(wallTimeToEpoch('2026-03-29T02:30', 'Europe/Paris'), Date.UTC(2026, 2, 29, 1, 30));
    assert.equal(wallTimeToEpoch('2026-03-29T03:30', 'Europe/Paris'), Date.UTC(2026, 2, 29, 1, 30));
    // 2026-10-25: 02:30 happens twice (CEST, then CET); the first.
    assert.equal(wallTimeToEpoch('2026-10-25T02:30', 'Europe/Paris'), Date.UTC(2026, 9, 25, 0, 30));
    assert.equal(wallTimeToEpoch('2026-10-25T04:00', 'Europe/Paris'), Date.UTC(2026, 9, 25, 3, 0));
  });

  it('turns a search form into klog query parameters', () => {
    assert.deepEqual(buildQuery(EMPTY_FILTERS, NOW, 'UTC'), { ok: true, params: {} });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, text: '  disk full ', service: ' klog ', node: 'ood1', level: 'warn', range: '1h' }, NOW, 'UTC'), {
      ok: true,
      params: { text: 'disk full', service: 'klog', node: 'ood1', level_min: 'warn', since: NOW - 3600_000 },
    });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, range: 'custom', from: '2026-11-24T08:00', to: '2026-11-24T09:15' }, NOW, 'Asia/Shanghai'), {
      ok: true,
      params: { since: Date.UTC(2026, 10, 24, 0, 0), until: Date.UTC(2026, 10, 24, 1, 15) + 59_999 },
    });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, trace: 'abc' }, NOW, 'UTC'), { ok: true, params: { trace: 'abc' } });
  });

  it('names every field in error', () => {
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, text: 'x'.repeat(257), service: 's'.repeat(65), node: 'n'.repeat(129) }, NOW, 'UTC'), {
      ok: false,
      problems: { text: 'too_long', service: 'too_long', node: 'too_long' },
    });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, range: 'custom' }, NOW, 'UTC'), { ok: false, problems: { from: 'needs_time' } });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, range: 'custom', from: '2026-11-24T10:00', to: '2026-11-24T09:00' }, NOW, 'UTC'), { ok: false, problems: { to: 'from_after_to' } });
    assert.deepEqual(buildQuery({ ...EMPTY_FILTERS, range: 'custom', from: 'soon', to: '' }, NOW, 'UTC'), { ok: false, problems: { from: 'bad_time' } });
  });

  it('follows what the tail can filter, from the newest entry shown', () => {
    assert.equal(followBlocked({ text: 'x', since: 1 }), null);
    assert.equal(followBlocked({ until: 5 }), 'until');
    assert.equal(followBlocked({ trace: 't' }), 'trace');
    assert.deepEqual(tailParams({ text: 'disk', service: 'klog', node: 'ood1', level_min: 'error', since: 5 }, 42), {
      after_id: 42, service: 'klog', node: 'ood1', level_min: 'error', text: 'disk', timeout_ms: TAIL_WAIT_MS, limit: 200,
    });
    assert.deepEqual(tailParams({}, undefined), { timeout_ms: TAIL_WAIT_MS, limit: 200 });
  });

  it('merges entries newest first, once each, keeping the newest when over the cap', () => {
    const e = (id: number) => ({ id, msg: `m${id}` });
    assert.deepEqual(mergeEntries([e(5), e(3)], [e(7), e(5), e(6)]).map((x) => x.id), [7, 6, 5, 3]);
    assert.deepEqual(mergeEntries([e(2)], [e(1)]).map((x) => x.id), [2, 1], 'older pages go below');
    const many = Array.from({ length: MAX_SHOWN }, (_, i) => e(i + 1));
    const merged = mergeEntries(many, [e(MAX_SHOWN + 1)]);
    assert.equal(merged.length, MAX_SHOWN);
    assert.deepEqual([merged[0]!.id, merged.at(-1)!.id], [MAX_SHOWN + 1, 2]);
  });

  it('shows levels by severity, lists names, and prints fields', () => {
    assert.deepEqual((['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const).map(levelTone), ['neutral', 'neutral', 'neutral', 'warn', 'bad', 'bad']);
    assert.deepEqual(namesUnder(['services/klog/info', 'services/klog/instances/a', 'services/dfs/spec', 'servicesx/y', 'devices/a/info'], 'services/'), ['dfs', 'klog']);
    assert.equal(fieldsText(undefined), '');
    assert.equal(fieldsText({}), '');
    assert.equal(fieldsText({ pid: 7 }), '{\n  "pid": 7\n}');
  });
});
