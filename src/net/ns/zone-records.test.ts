// The zone's own names, derived from what system-config says about its devices and apps, and the check applied to
// records admins add through the API.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkApiRecord, cnameConflict, zoneRecords } from './zone-records.ts';

const names = (s: Parameters<typeof zoneRecords>[0]) => zoneRecords(s).map((r) => `${r.name} ${r.type} ${r.value}`);

describe('zone records', () => {
  it('sends the zone, sys and every app to the core devices, and each device to itself', () => {
    const out = names({
      zone: 'alice.example.com',
      devices: [
        { name: 'nas', role: 'storage', addresses: ['192.168.1.20', 'fe80::1'] },
        { name: 'ood1', role: 'core', addresses: ['127.0.0.1', '192.168.1.10'] },
      ],
      apps: ['photos', 'photos', 'Bad_App'],
    });
    assert.deepEqual(out, [
      'alice.example.com A 192.168.1.10',
      'sys.alice.example.com A 192.168.1.10',
      'photos.alice.example.com A 192.168.1.10',
      'nas.alice.example.com A 192.168.1.20',
      'ood1.alice.example.com A 192.168.1.10',
    ]);
  });

  it('lets sys and apps win over a device of the same name, and falls back to any device before a core reports', () => {
    const out = names({ zone: 'z.example', devices: [{ name: 'sys', role: 'storage', addresses: ['10.0.0.2'] }, { name: 'web', role: 'portable', addresses: ['10.0.0.3'] }], apps: ['web'] });
    assert.deepEqual(out, ['z.example A 10.0.0.2', 'z.example A 10.0.0.3', 'sys.z.example A 10.0.0.2', 'sys.z.example A 10.0.0.3', 'web.z.example A 10.0.0.2', 'web.z.example A 10.0.0.3']);
  });

  it('checks API records as configuration records are checked', () => {
    assert.deepEqual(checkApiRecord({ name: 'Printer.LAN.', type: 'a', value: '192.168.1.5', ttl: 60 }), { name: 'printer.lan', type: 'A', value: '192.168.1.5', ttl: 60, line: 0 });
    assert.match(checkApiRecord({ name: 'a..b', type: 'A', value: '1.2.3.4' }) as string, /^name: /);
    assert.match(checkApiRecord({ name: 'a.b', type: 'A', value: '1.2.3' }) as string, /^value: /);
    assert.match(checkApiRecord({ name: 'a.b', type: 'BOGUS', value: 'x' }) as string, /^type: unknown type/);
    const a = checkApiRecord({ name: 'x.lan', type: 'A', value: '10.0.0.1' });
    const c = checkApiRecord({ name: 'x.lan', type: 'CNAME', value: 'y.lan' });
    assert.ok(typeof a !== 'string' && typeof c !== 'string');
    assert.match(cnameConflict([a, c]) ?? '', /CNAME beside other records/);
    assert.equal(cnameConflict([a]), undefined);
  });
});
