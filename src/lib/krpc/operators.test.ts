// Operating a kernel service's admin API: who may read, and who may change the zone's configuration through it (the
// service writes it with its own token, so a kernel service of a device RBAC keeps from that configuration must not
// have it written for it). Who may call at all is tabled in scheduler/derive.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CallContext, Principal } from './index.ts';
import { KrpcError } from './index.ts';
import { createOperatorAuthorize } from './operators.ts';

const ctx = (p: Principal): CallContext => ({ principal: p, token: null, trace: 't', seq: 0, remoteAddress: '127.0.0.1' });
const kernelOn = (deviceName?: string, deviceRole?: string): Principal => ({
  userId: 'node-daemon', appId: 'buckyos-cli', kind: 'service', expiresAt: 0, device: 'did:dev:x', deviceName, deviceRole,
});

describe('operator calls that change the zone\'s configuration', () => {
  const authorize = createOperatorAuthorize(async (u) => (u === 'alice' ? 'admin' : undefined), 'the DNS server');
  const rows: { name: string; p: Principal; changes: boolean }[] = [
    { name: 'a core device\'s kernel', p: kernelOn('ood1', 'core'), changes: true },
    { name: 'a storage device\'s kernel', p: kernelOn('nas1', 'storage'), changes: false },
    { name: 'a gateway device\'s kernel', p: kernelOn('gw1', 'gateway'), changes: false },
    { name: 'the kernel of a device whose role is unknown', p: kernelOn(), changes: false },
    { name: 'an admin in the CLI', p: { userId: 'alice', appId: 'buckyos-cli', kind: 'sudo', expiresAt: 0 }, changes: true },
  ];
  for (const row of rows) {
    it(`lets ${row.name} read${row.changes ? ' and change' : ', not change'}`, async () => {
      await authorize(ctx(row.p));
      if (row.changes) await authorize(ctx(row.p), true);
      else {
        await assert.rejects(authorize(ctx(row.p), true), (e: unknown) => {
          assert.ok(e instanceof KrpcError);
          assert.equal(e.code, 'PERMISSION_DENIED');
          assert.match(e.message, /may not change the zone's configuration through the DNS server/);
          return true;
        });
      }
    });
  }
});
