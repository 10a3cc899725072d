// A zone of several devices, each in its own network namespace on one LAN: the first is activated, the others join
// with offers and reach the zone's control plane through device tunnels; a removed device is shut out at once; a
// device whose link is cut keeps running on what it last knew and converges when the link returns; a home device behind
// NAT joins a zone whose core device is a public host, through the tunnel it opens outwards.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { type TestNet, netnsUnavailableReason, startNet } from './support/netns.ts';
import { type TestDevice, activateFirst, destroyDevice, joinDevice, startDevice } from './support/devices.ts';
import { REPO } from './support/zone.ts';

const ZONE = 'home.example.com';
const skip = netnsUnavailableReason();

/** Calls a kRPC method on 127.0.0.1:<port> inside `on`'s namespace with a service token signed by `signer`'s device
 * key: what a device's processes do, without going through its CLI. */
async function callAs(net: TestNet, on: TestDevice, signer: TestDevice, port: number, service: string, method: string, params: unknown) {
  const script = join(on.root, 'call-as.mjs');
  writeFileSync(script, `
    import { readFileSync } from 'node:fs';
    import { randomUUID } from 'node:crypto';
    const { loadKeyFile, didDev } = await import(${JSON.stringify(join(REPO, 'dist/lib/identity/keys.js'))});
    const { signAccessToken } = await import(${JSON.stringify(join(REPO, 'dist/lib/identity/tokens.js'))});
    const kp = loadKeyFile(${JSON.stringify(join(signer.paths.etc, 'device_key.pem'))});
    const token = await signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'buckyos-cli', jti: randomUUID() }, kp.privateKey, 600, didDev(kp.publicKeyB64));
    const r = await fetch('http://127.0.0.1:${port}/kapi/${service}', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: ${JSON.stringify(method)}, params: ${JSON.stringify(params)}, sys: [1, token] }) });
    console.log(JSON.stringify(await r.json()));
  `);
  return JSON.parse(await net.exec(on.name, process.execPath, [script])) as { result?: unknown; error?: { code: string; message: string } };
}

describe('multi-device zone on a LAN', { skip: skip ?? false, timeout: 600_000 }, () => {
  let net: TestNet;
  const devices: TestDevice[] = [];
  let ood1: TestDevice;
  let node2: TestDevice;
  let portable: TestDevice;

  before(async () => {
    net = await startNet({ devices: [{ name: 'ood1' }, { name: 'node2' }, { name: 'pn1' }] });
    [ood1, node2, portable] = await Promise.all(['ood1', 'node2', 'pn1'].map((n) => startDevice(net, n)));
    devices.push(ood1, node2, portable);
    await activateFirst(ood1, ZONE);
  });
  after(async () => {
    await Promise.all(devices.map(destroyDevice));
    await net?.destroy();
  });

  it('a device joins with a one-time offer and reaches system-config through the tunnel', async () => {
    await joinDevice(ood1, node2, 'storage');
    const boot = await node2.cli(['config', 'get', 'boot/config']);
    assert.match(boot, /eyJ/, 'node2 reads the zone boot config from ood1 through its gateway and tunnel');
    const list = JSON.parse(await ood1.cli(['device', 'list', '--json'])) as { name: string; role: string; state: string }[];
    assert.deepEqual(list.map((d) => [d.name, d.role]).sort(), [['node2', 'storage'], ['ood1', 'core']]);
  });

  it('a storage device\'s kernel keeps to its own records: its heartbeats land, the zone\'s accounts are refused', async () => {
    // Its node_daemon's heartbeats and report went through (RBAC lets it write its own records).
    assert.match(await ood1.cli(['config', 'get', 'services/gateway/instances/node2']), /"node":"node2"/);
    const report = (await ood1.cli(['config', 'get', 'devices/node2/info'])).trim();
    assert.match(report, /reported_at/);
    // Root on node2 signs as its kernel, and RBAC's device side refuses it the zone's configuration.
    const settings = JSON.stringify({ name: 'mole', role: 'admin', state: 'active' });
    const direct = await callAs(net, ood1, node2, 3200, 'system-config', 'set', { key: 'users/mole/settings', value: settings });
    assert.equal(direct.error?.code, 'PERMISSION_DENIED');
    assert.match(direct.error?.message ?? '', /on storage device node2 may not write config key "users\/mole\/settings"/);
    const viaCli = await node2.tryCli(['config', 'set', 'system/rbac/policy', 'g, mole, admin']);
    assert.notEqual(viaCli.code, 0);
    assert.match(viaCli.stderr, /PERMISSION_DENIED|may not write/);
    const own = await callAs(net, ood1, node2, 3200, 'system-config', 'set', { key: 'devices/node2/info', value: report });
    assert.ok(own.result, `its own report is its to write: ${JSON.stringify(own.error)}`);
  });

  it('a join code that was tampered with is refused, and the genuine one works', async () => {
    const offer = JSON.parse(await ood1.cli(['device', 'add', '--role', 'portable', '--name', 'pn1', '--json'])) as { code: string };
    const parts = offer.code.split('.');
    const claims = JSON.parse(Buffer.from(parts[2]!, 'base64url').toString()) as { role: string };
    claims.role = 'core';
    const forged = [parts[0], parts[1], Buffer.from(JSON.stringify(claims)).toString('base64url'), parts[3]].join('.');
    const refused = await portable.tryCli(['join', forged]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /offer/);
    await portable.cli(['join', offer.code]);
    await portable.waitFor((s) => s.state === 'running', 90_000, 'pn1 running');
  });

  it('a device whose link is cut keeps running on its cached config and converges when the link returns', async () => {
    const before = portable.status()!;
    await net.cut('pn1');
    const apart = await portable.tryCli(['config', 'get', 'boot/config']);
    assert.notEqual(apart.code, 0, 'system-config is out of reach while the link is cut');
    // A restart while apart: node_daemon boots on the run config it cached, so the device still serves its gateway.
    await portable.stop();
    portable.start();
    const s = await portable.waitFor((st) => st.state === 'running', 90_000, 'pn1 running while cut off');
    assert.deepEqual(s.children.map((c) => c.name).sort(), before.children.map((c) => c.name).sort());
    await net.restore('pn1');
    for (let i = 0; ; i++) {
      const r = await portable.tryCli(['config', 'get', 'boot/config']);
      if (r.code === 0) break;
      if (i > 120) assert.fail(`pn1 did not reach system-config after the link returned: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 500));
    }
    for (let i = 0; ; i++) {
      const list = JSON.parse(await ood1.cli(['device', 'list', '--json'])) as { name: string; state: string }[];
      if (list.find((d) => d.name === 'pn1')?.state === 'online') break;
      if (i > 60) assert.fail(`pn1 is not reported online after the link returned: ${JSON.stringify(list)}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  });

  it('a removed device is shut out at once: its tokens are refused and its tunnel is closed', async () => {
    const ok = await callAs(net, ood1, node2, 3200, 'system-config', 'get', { key: 'boot/config' });
    assert.ok(ok.result, `node2's token works before removal: ${JSON.stringify(ok.error)}`);
    await ood1.cli(['device', 'rm', 'node2']);
    const refused = await callAs(net, ood1, node2, 3200, 'system-config', 'get', { key: 'boot/config' });
    assert.equal(refused.error?.code, 'UNAUTHENTICATED');
    const through = await node2.tryCli(['config', 'get', 'boot/config']);
    assert.notEqual(through.code, 0, 'node2 no longer reaches the zone through its tunnel');
    const list = JSON.parse(await ood1.cli(['device', 'list', '--json'])) as { name: string }[];
    assert.ok(!list.some((d) => d.name === 'node2'));
  });
});

describe('multi-device zone: a home device behind NAT joins a zone whose core is a public host', { skip: skip ?? false, timeout: 300_000 }, () => {
  let net: TestNet;
  const devices: TestDevice[] = [];

  before(async () => {
    net = await startNet({ nat: true, devices: [{ name: 'gw', site: 'public' }, { name: 'nas', site: 'home' }] });
    devices.push(...(await Promise.all(['gw', 'nas'].map((n) => startDevice(net, n)))));
  });
  after(async () => {
    await Promise.all(devices.map(destroyDevice));
    await net?.destroy();
  });

  it('joins through the NAT and reaches the zone over the tunnel it opened', async () => {
    const [gw, nas] = devices as [TestDevice, TestDevice];
    await activateFirst(gw, 'public.example.com');
    await joinDevice(gw, nas, 'storage');
    assert.match(await nas.cli(['config', 'get', 'boot/config']), /eyJ/);
    for (let i = 0; ; i++) {
      const list = JSON.parse(await gw.cli(['device', 'list', '--json'])) as { name: string; state: string }[];
      if (list.find((d) => d.name === 'nas')?.state === 'online') break;
      if (i > 60) assert.fail(`nas is not reported online: ${JSON.stringify(list)}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  });
});
