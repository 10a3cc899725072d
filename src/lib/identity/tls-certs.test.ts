import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { type KeyPair, generateKeyPair, privateKeyToPem } from './keys.ts';
import { DEFAULT_CERT_DAYS, certPublicKeyB64, createCaCert, issueCert, selfSignedCert, x509PublicKeyB64 } from './tls-certs.ts';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 86_400_000;

describe('tls-certs', () => {
  let caKey: KeyPair;
  let caPem: string;
  let ca: X509Certificate;
  // Every temp directory openssl works in must be gone afterwards; os.tmpdir() follows TMPDIR, so pointing it at a
  // directory of this test's own shows exactly what the code left behind.
  let tmp: string;
  let savedTmpdir: string | undefined;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tls-certs-test-'));
    savedTmpdir = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    caKey = generateKeyPair();
    caPem = await createCaCert({ caKey, commonName: 'alice.example.com zone CA' });
    ca = new X509Certificate(caPem);
  });

  after(() => {
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
    rmSync(tmp, { recursive: true, force: true });
  });

  it('creates a self-signed CA certificate for the CA key', () => {
    assert.equal(ca.ca, true);
    assert.equal(ca.subject, 'CN=alice.example.com zone CA');
    assert.equal(ca.issuer, ca.subject);
    assert.ok(ca.verify(caKey.publicKey), 'signed by the CA key');
    assert.ok(ca.checkIssued(ca));
    assert.equal(certPublicKeyB64(caPem), caKey.publicKeyB64);
    const lifetime = Date.parse(ca.validTo) - Date.parse(ca.validFrom);
    assert.ok(Math.abs(lifetime - DEFAULT_CERT_DAYS * DAY_MS) <= DAY_MS, `default lifetime ${DEFAULT_CERT_DAYS} days, got ${lifetime / DAY_MS}`);
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('issues a leaf for another public key, chained to the CA, with SANs and both EKUs', async () => {
    const device = generateKeyPair();
    const pem = await issueCert({
      caKey,
      caCertPem: caPem,
      subjectPublicKey: device.publicKey,
      commonName: 'ood1',
      ips: ['192.168.1.20', '::1'],
      dnsNames: ['ood1.alice.example.com', '*.alice.example.com', 'localhost'],
      days: 30,
    });
    const leaf = new X509Certificate(pem);
    assert.equal(leaf.ca, false);
    assert.equal(leaf.subject, 'CN=ood1');
    assert.equal(leaf.issuer, ca.subject);
    assert.ok(leaf.verify(caKey.publicKey), 'signed by the CA key');
    assert.ok(!leaf.verify(device.publicKey), 'not self-signed');
    assert.ok(leaf.checkIssued(ca));
    assert.equal(certPublicKeyB64(pem), device.publicKeyB64);
    assert.deepEqual(leaf.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
    assert.equal(leaf.checkIP('192.168.1.20'), '192.168.1.20');
    assert.equal(leaf.checkIP('::1'), '::1');
    assert.equal(leaf.checkIP('192.168.1.21'), undefined);
    assert.equal(leaf.checkHost('ood1.alice.example.com'), 'ood1.alice.example.com');
    assert.equal(leaf.checkHost('app.alice.example.com'), '*.alice.example.com');
    assert.equal(leaf.checkHost('evil.example.com'), undefined);
    const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    assert.ok(Math.abs(lifetime - 30 * DAY_MS) <= DAY_MS, `30 days, got ${lifetime / DAY_MS}`);
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('gives a chain that a TLS client trusting only the CA accepts', async () => {
    const device = generateKeyPair();
    const cert = await issueCert({ caKey, caCertPem: caPem, subjectPublicKey: device.publicKey, commonName: 'ood1', dnsNames: ['ood1.alice.example.com'] });
    const server = tlsCreateServer({ key: privateKeyToPem(device.privateKey), cert, minVersion: 'TLSv1.3' }, (s) => s.end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'ood1.alice.example.com', ca: caPem });
      await once(socket, 'secureConnect');
      assert.equal(socket.authorized, true);
      socket.destroy();
      const wrongName = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'other.alice.example.com', ca: caPem });
      const [err] = (await once(wrongName, 'error')) as [Error & { code?: string }];
      assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      server.close();
    }
  });

  it('issues for a non-Ed25519 subject key (a browser-facing gateway), which certPublicKeyB64 refuses by name', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = await issueCert({ caKey, caCertPem: caPem, subjectPublicKey: publicKey, commonName: 'gateway', dnsNames: ['alice.example.com'] });
    const leaf = new X509Certificate(pem);
    assert.ok(leaf.verify(caKey.publicKey));
    assert.ok(leaf.publicKey.equals(publicKey));
    assert.throws(() => certPublicKeyB64(pem), /the certificate's key is ec, not Ed25519/);
  });

  it('makes a self-signed device certificate usable as TLS server and client', async () => {
    const device = generateKeyPair();
    const pem = await selfSignedCert({ key: device, commonName: 'ood2', ips: ['10.0.0.2'] });
    const cert = new X509Certificate(pem);
    assert.equal(cert.ca, false);
    assert.ok(cert.verify(device.publicKey), 'signed by its own key');
    assert.equal(x509PublicKeyB64(cert), device.publicKeyB64);
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
    assert.equal(cert.checkIP('10.0.0.2'), '10.0.0.2');
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('refuses names, addresses and lifetimes that are not what they claim, before running openssl', async () => {
    const key = generateKeyPair();
    const bad: [Parameters<typeof selfSignedCert>[0], RegExp][] = [
      [{ key, commonName: '' }, /common name "" is not allowed/],
      [{ key, commonName: 'a/CN=evil' }, /common name "a\/CN=evil" is not allowed/],
      [{ key, commonName: 'a\nb' }, /common name "a\\nb" is not allowed/],
      [{ key, commonName: 'x'.repeat(65) }, /common name "x{65}" is not allowed/],
      [{ key, commonName: 'ok', ips: ['10.0.0.256'] }, /SAN IP address "10.0.0.256" is not an IPv4 or IPv6 address/],
      [{ key, commonName: 'ok', ips: ['fe80::1%eth0'] }, /SAN IP address "fe80::1%eth0"/],
      [{ key, commonName: 'ok', dnsNames: ['a..b'] }, /SAN DNS name "a..b" is not a DNS name/],
      [{ key, commonName: 'ok', dnsNames: ['bad_name.example'] }, /SAN DNS name "bad_name.example"/],
      [{ key, commonName: 'ok', dnsNames: ['x.example,DNS:evil.example'] }, /SAN DNS name "x.example,DNS:evil.example"/],
      [{ key, commonName: 'ok', dnsNames: ['a.example\nsubjectAltName = DNS:evil'] }, /SAN DNS name/],
      [{ key, commonName: 'ok', dnsNames: ['*.*.example'] }, /SAN DNS name "\*\.\*\.example"/],
      [{ key, commonName: 'ok', days: 0 }, /days must be a whole number from 1 to 36500, got 0/],
      [{ key, commonName: 'ok', days: 1.5 }, /days must be a whole number/],
      [{ key, commonName: 'ok', days: 40_000 }, /days must be a whole number/],
    ];
    for (const [opts, message] of bad) await assert.rejects(selfSignedCert(opts), message);
    assert.deepEqual(readdirSync(tmp), [], 'nothing was started for refused input');
  });

  it('refuses a CA certificate that is not a CA, not for the CA key, or not a certificate', async () => {
    const device = generateKeyPair();
    const leafPem = await selfSignedCert({ key: device, commonName: 'leaf' });
    const other = generateKeyPair();
    const base = { caKey, subjectPublicKey: device.publicKey, commonName: 'x' };
    await assert.rejects(issueCert({ ...base, caCertPem: leafPem, caKey: device }), /caCertPem \(CN=leaf\) is not a CA certificate/);
    await assert.rejects(issueCert({ ...base, caCertPem: caPem, caKey: other }), /caCertPem does not certify caKey/);
    await assert.rejects(issueCert({ ...base, caCertPem: 'not a certificate' }), /caCertPem is not a PEM certificate/);
    await assert.rejects(issueCert({ ...base, caCertPem: caPem, subjectPublicKey: device.privateKey }), /subjectPublicKey must be a public key, got a private key/);
    assert.throws(() => certPublicKeyB64('garbage'), /not a PEM certificate/);
  });
});
