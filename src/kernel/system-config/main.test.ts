// The store guard system-config instances keep from the control records (followControl): writes wait while a move
// freezes the store, and while the instance cannot tell whether one does.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FREEZE_KEY } from '../../lib/config/store-control.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { followControl } from './main.ts';
import type { ConfigStore } from './store.ts';
import { until } from '../../../test/support/wait.ts';

/** `store` with every method call made through `around`, which may fail it, make it, or add to it. */
function intercepted(store: ConfigStore, around: (method: string | symbol, call: () => Promise<unknown>) => Promise<unknown>): ConfigStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => around(prop, () => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    },
  });
}

/** Waits, polling quickly, until `check` holds. */
const waitUntil = (what: string, check: () => boolean) => until(what, () => (check() ? true : undefined), 10_000, 20);

describe('the store guard (followControl)', () => {
  let dir: string;
  let store: ConfigStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'guard-'));
    store = openSqliteStore(join(dir, 'config.db'));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('follows a freeze, and refuses writes while it cannot read the control records', async () => {
    let failing = false;
    // The real store, whose reads fail on demand as an unreachable backend's would.
    const flaky = intercepted(store, (method, call) =>
      failing && method !== 'waitForChange' ? Promise.reject(new Error('backend unreachable')) : call(),
    );
    const stop = new AbortController();
    const errors: unknown[] = [];
    const guard = followControl(flaky, stop.signal, (err) => errors.push(err));
    try {
      assert.match(guard.frozen() ?? '', /has not read the store control records yet/);
      await waitUntil('the records are read', () => guard.frozen() === null);
      await store.set(FREEZE_KEY, JSON.stringify({ reason: 'moving to SQLite', by: 'ood1', at: 1 }));
      await waitUntil('the freeze is seen', () => guard.frozen() === 'moving to SQLite');
      await store.delete(FREEZE_KEY);
      await waitUntil('the freeze is lifted', () => guard.frozen() === null);
      failing = true;
      // Wake the follower so that its next read fails.
      await store.set('other/key', 'x');
      await waitUntil('reads fail', () => /lost track of the store control records \(backend unreachable\)/.test(guard.frozen() ?? ''));
      assert.ok(errors.length > 0);
      failing = false;
      await waitUntil('the records are read again', () => guard.frozen() === null);
    } finally {
      stop.abort();
    }
  });

  it('does not step over a freeze written while it reads the history', async () => {
    let sneak = false;
    // A freeze lands right after a history read returns, before anything else is read: where the follower once took
    // the store's revision, and so skipped the freeze for good.
    const racing = intercepted(store, async (method, call) => {
      const result = await call();
      if (method === 'changesSince' && sneak) {
        sneak = false;
        await store.set(FREEZE_KEY, JSON.stringify({ reason: 'moving to etcd', by: 'ood1', at: 2 }));
      }
      return result;
    });
    const stop = new AbortController();
    const guard = followControl(racing, stop.signal, () => undefined);
    try {
      await waitUntil('the records are read', () => guard.frozen() === null);
      sneak = true;
      await store.set('other/wake', 'y');
      await waitUntil('the freeze is seen', () => guard.frozen() === 'moving to etcd');
    } finally {
      stop.abort();
      await store.delete(FREEZE_KEY);
    }
  });
});
