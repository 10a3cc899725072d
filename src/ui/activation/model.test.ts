// The activation page's rules: the words asked back, the problems shown beside each field, what the device's
// refusals mean, and where a typed address leads; and the two catalogues agree.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KrpcError } from '../../lib/krpc/errors.ts';
import { en, zh } from './messages.ts';
import { type ZoneForm, confirmationProblems, deviceAddressUrl, explainActivationError, pickConfirmPositions, wordsProblem, zoneFormProblems } from './model.ts';

const LEGAL = 'legal winner thank year wave sausage worth useful legal winner thank yellow';
const GOOD: ZoneForm = { zone: 'alice.example.com', owner: 'alice', deviceName: 'ood1', gateway: 'lan', gatewayHost: '', password: 'Correct-horse-9', password2: 'Correct-horse-9' };

describe('activation page rules', () => {
  it('asks back three distinct positions in order', () => {
    let x = 0;
    const seq = [0.99, 0.0, 0.5];
    const p = pickConfirmPositions(() => seq[x++]!);
    assert.deepEqual(p, [1, 7, 12]);
    for (let i = 0; i < 50; i++) {
      const r = pickConfirmPositions();
      assert.equal(new Set(r).size, 3);
      assert.ok(r.every((n) => n >= 1 && n <= 12));
    }
  });

  it('names each word typed back wrong or left empty', () => {
    const words = LEGAL.split(' ');
    assert.deepEqual(confirmationProblems(words, { 1: ' Legal ', 2: 'winner', 3: 'thank' }), []);
    assert.deepEqual(confirmationProblems(words, { 1: 'legal', 6: 'worth', 12: '' }).map((p) => [p.key, p.params?.n]), [['confirm.wrong', 6], ['confirm.empty', 12]]);
  });

  it('explains typed recovery words that are not a phrase', () => {
    assert.equal(wordsProblem('').problem?.key, 'words.empty');
    assert.deepEqual(wordsProblem('legal winner').problem, { key: 'words.count', params: { count: 2 } });
    assert.deepEqual(wordsProblem(LEGAL.replace('sausage', 'sausagx')).problem, { key: 'words.unknown_hint', params: { n: 6, word: 'sausagx', guess: 'sausage' } });
    assert.equal(wordsProblem(LEGAL.replace('yellow', 'winner')).problem?.key, 'words.checksum');
    assert.deepEqual(wordsProblem(`  ${LEGAL.toUpperCase()} `), { problem: null, phrase: LEGAL });
  });

  it('puts each form problem beside its field', () => {
    assert.deepEqual(zoneFormProblems(GOOD), []);
    const keys = (f: Partial<ZoneForm>) => zoneFormProblems({ ...GOOD, ...f }).map((p) => `${p.field}:${p.key}`);
    assert.deepEqual(keys({ zone: '', owner: 'Alice!', deviceName: '1x' }), ['zone:zone.name_empty', 'owner:zone.owner_invalid', 'deviceName:zone.device_invalid']);
    assert.deepEqual(keys({ zone: 'localhost' }), ['zone:zone.name_invalid']);
    assert.deepEqual(keys({ password: 'short1', password2: 'short1' }), ['password:weak.length']);
    assert.deepEqual(keys({ password: 'alllowercaseletters' }), ['password:weak.kinds']);
    assert.deepEqual(keys({ password: 'alice-Password-1' }), ['password:weak.no_user']);
    assert.deepEqual(keys({ password: 'Password123', password2: 'Password123' }), ['password:weak.not_common']);
    assert.deepEqual(keys({ password2: 'Correct-horse-8' }), ['password2:zone.password2_mismatch']);
    assert.deepEqual(keys({ gateway: 'public', gatewayHost: 'x'.repeat(254) }), ['gatewayHost:zone.gateway_host_invalid']);
    assert.deepEqual(keys({ gateway: 'sn', gatewayHost: '' }), []);
  });

  it('explains what the device refused, beside the field it concerns when there is one', () => {
    const at = (e: unknown) => { const p = explainActivationError(e); return `${p.field}:${p.key}`; };
    assert.equal(at(new KrpcError('FAILED_PRECONDITION', 'this device is already activated; run `buckyos reset` first')), 'form:err.already_activated');
    assert.equal(at(new KrpcError('FAILED_PRECONDITION', 'unknown or expired activation attempt; call prepare again')), 'form:err.attempt');
    assert.equal(at(new KrpcError('INVALID_PARAMS', 'admin password must not contain the zone name')), 'password:weak.no_zone');
    assert.equal(at(new KrpcError('INVALID_PARAMS', 'zone name: a DNS host name such as alice.example.com')), 'zone:zone.name_invalid');
    assert.equal(at(new KrpcError('INVALID_PARAMS', 'user name: 2-32 lowercase letters')), 'owner:zone.owner_invalid');
    assert.equal(at(new KrpcError('UNAVAILABLE', 'cannot reach http://x/kapi/activation')), 'form:err.unreachable');
    assert.deepEqual(explainActivationError(new KrpcError('RATE_LIMITED', 'slow down', { retry_after_sec: 42 })).params, { seconds: 42 });
    assert.equal(at(new Error('boom')), 'form:err.failed');
  });

  it('turns a typed address into an activation page, or refuses it', () => {
    assert.equal(deviceAddressUrl('192.168.1.20', 3182), 'http://192.168.1.20:3182/');
    assert.equal(deviceAddressUrl(' 192.168.1.20:8080 ', 3182), 'http://192.168.1.20:8080/');
    assert.equal(deviceAddressUrl('http://nas.local:3182/anything', 3182), 'http://nas.local:3182/');
    assert.equal(deviceAddressUrl('[fe80::1]:3182', 3182), 'http://[fe80::1]:3182/');
    for (const bad of ['', 'not an address!', 'host:99999', 'a..b:x', '-host']) assert.equal(deviceAddressUrl(bad, 3182), null, bad);
  });

  it('has the same keys and placeholders in both languages', () => {
    assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
    const holes = (s: string) => (s.match(/\{[a-z_]+\}/g) ?? []).sort();
    for (const k of Object.keys(en) as (keyof typeof en)[]) assert.deepEqual(holes(zh[k]), holes(en[k]), k);
  });
});
