// The device directory on a scripted store: a listing asked for by a lookup that comes back after the watch applied a
// revocation must not trust the removed device again.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DOCUMENT_LIFETIME_SEC, type DeviceDoc, type ZoneBootConfig, signDocument } from './documents.ts';
import { DeviceDirectory } from './device-directory.ts';
import { didDev, generateKeyPair } from './keys.ts';

const ZONE = 'alice.example.com';

/** A store whose listings can be held (answered with what was there when asked) and whose watch answers on commits. */
function scriptedStore() {
  const data = new Map<string, string>();
  const events: { key: string; value: string | null; revision: number }[] = [];
  let revision = 0;
  let hold: Promise<void> | null = null;
  let listAsked: (() => void) | null = null;
  let watcher: { after: number; resolve: (r: unknown) => void } | null = null;
  const answerWatch = () => {
    if (!watcher) return;
    const evs = events.filter((e) => e.revision > watcher!.after);
    if (evs.length === 0) return;
    const w = watcher;
    watcher = null;
    w.resolve({ events: evs.map((e) => ({ type: e.value === null ? 'delete' : 'put', key: e.key, value: e.value, revision: e.revision })), revision });
  };
  return {
    commit(key: string, value: string | null) {
      revision++;
      if (value === null) data.delete(key);
      else data.set(key, value);
      events.push({ key, value, revision });
      answerWatch();
    },
    /** The next listing is taken now and answered only when `release` is called; resolves once it was asked for. */
    holdNextList(): { asked: Promise<void>; release: () => void } {
      let release!: () => void;
      hold = new Promise<void>((r) => (release = r));
      const asked = new Promise<void>((r) => (listAsked = r));
      return { asked, release };
    },
    config: {
      list: async () => {
        const answer = { entries: [...data].map(([key, value]) => ({ key, value, revision })), revision, more: false };
        const held = hold;
        hold = null;
        listAsked?.();
        listAsked = null;
        if (held) await held;
        return answer;
      },
      watch: (p: { after_revision: number }) =>
        new Promise((resolve) => {
          watcher = { after: p.after_revision, resolve };
          answerWatch();
        }),
    },
  };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 500) throw new Error(`${what}: not reached`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('DeviceDirectory', () => {
  it('does not trust a removed device again when a listing from before its removal comes back after the watch', async () => {
    const owner = generateKeyPair();
    const iat = Math.floor(Date.now() / 1000);
    const boot: ZoneBootConfig = {
      typ: 'zone-boot', zone: ZONE, owner: 'alice', owner_key: owner.publicKeyB64, verify_hub_key: generateKeyPair().publicKeyB64,
      enrol_key: generateKeyPair().publicKeyB64, core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat, exp: iat + DOCUMENT_LIFETIME_SEC,
    };
    const doc = async (name: string) => {
      const key = generateKeyPair();
      const d: DeviceDoc = { typ: 'device', name, zone: ZONE, did: didDev(key.publicKeyB64), key: key.publicKeyB64, role: 'storage', iat, exp: boot.exp };
      return { key, jwt: await signDocument(d, owner.privateKey) };
    };
    const store = scriptedStore();
    const nas2 = await doc('nas2');
    store.commit('devices/ood1/doc', (await doc('ood1')).jwt);
    store.commit('devices/nas2/doc', nas2.jwt);
    const directory = new DeviceDirectory({ config: store.config as never, boot });
    try {
      await directory.follow();
      assert.ok(directory.byName('nas2'));

      // A lookup of a device not known yet lists again; that listing is taken now and answered late.
      const held = store.holdNextList();
      const lookup = directory.byDid(didDev(generateKeyPair().publicKeyB64));
      await held.asked;
      store.commit('devices/nas2/revoked', JSON.stringify([nas2.key.publicKeyB64]));
      store.commit('devices/nas2/doc', null);
      await until('the watch applying the removal', () => directory.byName('nas2') === undefined);
      held.release();
      assert.equal(await lookup, undefined);
      assert.equal(directory.byName('nas2'), undefined, 'the late listing did not bring nas2 back');
      assert.deepEqual(directory.list().map((d) => d.doc.name), ['ood1']);

      // The watch goes on from where it was: a device added later still arrives.
      const nas3 = await doc('nas3');
      store.commit('devices/nas3/doc', nas3.jwt);
      await until('nas3 arriving', () => directory.byName('nas3') !== undefined);
    } finally {
      directory.close();
    }
  });
});
