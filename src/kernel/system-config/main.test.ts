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

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

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
    const flaky = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (failing && prop !== 'waitForChange') return Promise.reject(new Error('backend unreachable'));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const stop = new AbortController();
    const errors: unknown[] = [];
    const guard = followControl(flaky, stop.signal, (err) => errors.push(err));
    try {
      assert.match(guard.frozen() ?? '', /has not read the store control records yet/);
      await until('the records are read', () => guard.frozen() === null);
      await store.set(FREEZE_KEY, JSON.stringify({ reason: 'moving to SQLite', by: 'ood1', at: 1 }));
      await until('the freeze is seen', () => guard.frozen() === 'moving to SQLite');
      await store.delete(FREEZE_KEY);
      await until('the freeze is lifted', () => guard.frozen() === null);
      failing = true;
      // Wake the follower so that its next read fails.
      await store.set('other/key', 'x');
      await until('reads fail', () => /lost track of the store control records \(backend unreachable\)/.test(guard.frozen() ?? ''));
      assert.ok(errors.length > 0);
      failing = false;
      await until('the records are read again', () => guard.frozen() === null);
    } finally {
      stop.abort();
    }
  });

  it('does not step over a freeze written while it reads the history', async () => {
    let sneak = false;
    // A freeze lands right after a history read returns, before anything else is read: where the follower once took
    // the store's revision, and so skipped the freeze for good.
    const racing = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        if (prop !== 'changesSince') return (...args: unknown[]) => (v as (...a: unknown[]) => unknown).apply(target, args);
        return async (...args: unknown[]) => {
          const events = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (sneak) {
            sneak = false;
            await target.set(FREEZE_KEY, JSON.stringify({ reason: 'moving to etcd', by: 'ood1', at: 2 }));
          }
          return events;
        };
      },
    });
    const stop = new AbortController();
    const guard = followControl(racing, stop.signal, () => undefined);
    try {
      await until('the records are read', () => guard.frozen() === null);
      sneak = true;
      await store.set('other/wake', 'y');
      await until('the freeze is seen', () => guard.frozen() === 'moving to etcd');
    } finally {
      stop.abort();
      await store.delete(FREEZE_KEY);
    }
  });
});
