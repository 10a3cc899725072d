// The devices page's rules: the offer form is checked as verify-hub checks it, the countdown follows the local clock
// from the moment the offer arrived, the QR code holds a real join code, and refusals land where they belong.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import qrcode from 'qrcode-generator';
import { OFFER_TTL_SEC } from '../../../lib/api/verify-hub.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { OFFER_LIFETIMES, checkOfferForm, explainDeviceError, formatCountdown, qrModules, qrPath, removable, secondsLeft, sortDevices, type ZoneDevice } from './model.ts';

const dev = (name: string, over: Partial<ZoneDevice> = {}): ZoneDevice => ({
  name, role: 'storage', did: `did:dev:${name}`, state: 'online', addresses: [], last_seen: null, current: false, ...over,
});

describe('devices page rules', () => {
  it('checks the offer form: a name is optional, but when given it must be a device name', () => {
    assert.deepEqual(checkOfferForm({ name: '', ttl: 900 }), []);
    assert.deepEqual(checkOfferForm({ name: ' nas2 ', ttl: 900 }), []);
    assert.equal(checkOfferForm({ name: 'NAS', ttl: 900 })[0]?.key, 'device_page.name.invalid');
    assert.equal(checkOfferForm({ name: 'nas_2', ttl: 900 })[0]?.key, 'device_page.name.invalid');
    assert.equal(checkOfferForm({ name: 'n'.repeat(33), ttl: 900 })[0]?.key, 'device_page.name.too_long');
    assert.equal(checkOfferForm({ name: '', ttl: 10 })[0]?.field, 'ttl');
    for (const s of OFFER_LIFETIMES) assert.ok(s >= OFFER_TTL_SEC.min && s <= OFFER_TTL_SEC.max);
    assert.equal(OFFER_LIFETIMES[0], OFFER_TTL_SEC.default);
  });

  it('counts down from the moment of receipt, never below zero', () => {
    assert.equal(secondsLeft(1_000, 900, 1_000), 900);
    assert.equal(secondsLeft(1_000, 900, 1_500), 900, 'a partial second still counts');
    assert.equal(secondsLeft(1_000, 900, 1_000 + 899_001), 1);
    assert.equal(secondsLeft(1_000, 900, 1_000 + 900_000), 0);
    assert.equal(secondsLeft(1_000, 900, 10_000_000), 0);
    assert.equal(formatCountdown(545), '9:05');
    assert.equal(formatCountdown(3600), '1:00:00');
    assert.equal(formatCountdown(86_399), '23:59:59');
    assert.equal(formatCountdown(0), '0:00');
  });

  it('draws a QR code that holds a join code as long as a real one', () => {
    const payload = `buckyos://join?offer=bkjoin1.${'eyJhbGciOiJFZERTQSJ9'.repeat(80)}`;
    const { size, dark } = qrModules(payload);
    assert.ok(size >= 21 && (size - 17) % 4 === 0, `a QR code's side is 17 + 4 × version, not ${size}`);
    // The three finder patterns: dark corners at the top left, top right and bottom left.
    for (const [r, c] of [[0, 0], [0, size - 1], [size - 1, 0]] as const) assert.equal(dark(r, c), true);
    const { path, size: withMargin } = qrPath(payload);
    assert.equal(withMargin, size + 8);
    assert.match(path, /^M4 4h1v1h-1z/);
    // Same modules as the library draws directly.
    const ref = qrcode(0, 'L');
    ref.addData(payload, 'Byte');
    ref.make();
    assert.equal(ref.getModuleCount(), size);
    assert.throws(() => qrModules('x'.repeat(4000)), /too long for a QR code/);
  });

  it('never offers to remove the device answering, and sorts it first', () => {
    assert.equal(removable(dev('ood1', { current: true, role: 'core' })), false);
    assert.equal(removable(dev('nas2')), true);
    assert.equal(removable(dev('ood2', { role: 'core' })), true, 'with the core warning and force');
    assert.deepEqual(sortDevices([dev('b'), dev('ood2', { role: 'core' }), dev('a'), dev('ood1', { current: true, role: 'core' })]).map((d) => d.name), ['ood1', 'ood2', 'a', 'b']);
  });

  it('explains verify-hub\'s refusals', () => {
    assert.deepEqual(explainDeviceError(new KrpcError('ALREADY_EXISTS', 'a device named "nas2" is already in the zone')), { field: 'name', key: 'device_page.name.taken' });
    assert.equal(explainDeviceError(new KrpcError('UNAVAILABLE', 'no core device has reported an address yet, so...')).key, 'device_page.no_peers');
    assert.equal(explainDeviceError(new KrpcError('UNAVAILABLE', 'cannot reach /kapi/verify-hub')).key, 'device_page.unreachable');
    assert.equal(explainDeviceError(new KrpcError('FAILED_PRECONDITION', 'nas2 is the zone\'s last core device')).params?.message, 'nas2 is the zone\'s last core device');
    assert.equal(explainDeviceError(new KrpcError('NOT_FOUND', 'no device')).key, 'device_page.gone');
  });
});
