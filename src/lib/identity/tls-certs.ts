// X.509 certificates for the zone's Ed25519 keys: a device's tunnel certificate (its device key, self-signed), and the
// zone CA that signs LAN certificates for the zone gateway (DESIGN §8).
//
// Node can read certificates but not create them, so the openssl CLI (installed on every supported system) signs
// them: an ASN.1/X.509 library would bring a large dependency tree into every process that imports identity code.
// openssl works on files, so they go to a private temp directory (0700) that is removed afterwards. The signing key is
// written there only encrypted, under a random passphrase that reaches openssl through its stdin: no private key ever
// lands in a file in the clear, even for the moment openssl runs.
import { spawn } from 'node:child_process';
import { X509Certificate, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KeyPair, publicKeyToB64 } from './keys.ts';

/** Ten years: tunnels authenticate by key, not by validity dates, so a device certificate only has to outlive the key. */
export const DEFAULT_CERT_DAYS = 3650;
const MAX_DAYS = 36_500;
const OPENSSL_TIMEOUT_MS = 30_000;

// X.520 limits a common name to 64 characters. The character set leaves out everything openssl's `-subj` syntax
// gives a meaning to (`/`, `=`, `+`, `\`, `,`) and everything that would break a config line, so no escaping is needed.
const COMMON_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$/;
const DNS_LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
// One leading wildcard label is allowed, for `*.<zone host>` certificates of the zone gateway.
const DNS_NAME = new RegExp(`^(?=.{1,253}$)(\\*\\.)?${DNS_LABEL}(\\.${DNS_LABEL})*$`);

export interface CaCertOptions {
  caKey: KeyPair;
  commonName: string;
  days?: number;
}

export interface IssueCertOptions {
  caKey: KeyPair;
  caCertPem: string;
  /** The key the certificate is for; any algorithm openssl knows (a browser-facing gateway may need ECDSA). */
  subjectPublicKey: KeyObject;
  commonName: string;
  ips?: string[];
  dnsNames?: string[];
  days?: number;
}

export interface SelfSignedCertOptions {
  key: KeyPair;
  commonName: string;
  ips?: string[];
  dnsNames?: string[];
  days?: number;
}

/** A self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign) for `caKey`. */
export async function createCaCert(opts: CaCertOptions): Promise<string> {
  const subject = subjectArg(opts.commonName);
  const days = daysArg(opts.days);
  const ext = [
    'basicConstraints = critical,CA:TRUE',
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
  ];
  return withSigningKey(opts.caKey.privateKey, async (dir, keyArgs) => {
    await writeFile(join(dir, 'ext.cnf'), extFile(ext), { mode: 0o600 });
    return ['x509', '-new', ...keyArgs('-key'), '-subj', subject, '-days', days, '-extfile', join(dir, 'ext.cnf'), '-extensions', 'ext'];
  });
}

/** A leaf certificate for `subjectPublicKey`, signed by the CA, usable as TLS server and client (EKU both), with SANs. */
export async function issueCert(opts: IssueCertOptions): Promise<string> {
  const subject = subjectArg(opts.commonName);
  const days = daysArg(opts.days);
  const sans = sanLine(opts.ips, opts.dnsNames);
  if (opts.subjectPublicKey.type !== 'public') {
    throw new Error(`subjectPublicKey must be a public key, got a ${opts.subjectPublicKey.type} key`);
  }
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(opts.caCertPem);
  } catch (e) {
    throw new Error(`caCertPem is not a PEM certificate: ${(e as Error).message}`);
  }
  if (!ca.ca) throw new Error(`caCertPem (${ca.subject.replace(/\n/g, ', ')}) is not a CA certificate (basicConstraints CA:FALSE)`);
  if (!ca.publicKey.equals(opts.caKey.publicKey)) throw new Error('caCertPem does not certify caKey: their public keys differ');
  return withSigningKey(opts.caKey.privateKey, async (dir, keyArgs) => {
    const caPath = join(dir, 'ca.pem');
    const pubPath = join(dir, 'subject.pub.pem');
    const extPath = join(dir, 'ext.cnf');
    await writeFile(caPath, opts.caCertPem, { mode: 0o600 });
    await writeFile(pubPath, opts.subjectPublicKey.export({ format: 'pem', type: 'spki' }), { mode: 0o600 });
    await writeFile(extPath, extFile([...leafExtensions(sans), 'authorityKeyIdentifier = keyid']), { mode: 0o600 });
    return [
      'x509', '-new', '-force_pubkey', pubPath, '-CA', caPath, ...keyArgs('-CAkey'),
      '-subj', subject, '-days', days, '-extfile', extPath, '-extensions', 'ext',
    ];
  });
}

/** A self-signed leaf certificate for `key` (TLS server and client), as a device presents on its tunnels. */
export async function selfSignedCert(opts: SelfSignedCertOptions): Promise<string> {
  const subject = subjectArg(opts.commonName);
  const days = daysArg(opts.days);
  const sans = sanLine(opts.ips, opts.dnsNames);
  return withSigningKey(opts.key.privateKey, async (dir, keyArgs) => {
    const extPath = join(dir, 'ext.cnf');
    await writeFile(extPath, extFile(leafExtensions(sans)), { mode: 0o600 });
    return ['x509', '-new', ...keyArgs('-key'), '-subj', subject, '-days', days, '-extfile', extPath, '-extensions', 'ext'];
  });
}

/** The certificate's Ed25519 public key, in the form of `KeyPair.publicKeyB64`; throws for any other key type. */
export function certPublicKeyB64(certPem: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    throw new Error(`not a PEM certificate: ${(e as Error).message}`);
  }
  return x509PublicKeyB64(cert);
}

/** As certPublicKeyB64, for a parsed certificate (what a TLS socket's getPeerX509Certificate() returns). */
export function x509PublicKeyB64(cert: X509Certificate): string {
  const type = cert.publicKey.asymmetricKeyType;
  if (type !== 'ed25519') throw new Error(`the certificate's key is ${type ?? 'of an unknown type'}, not Ed25519`);
  return publicKeyToB64(cert.publicKey);
}

// ---- inputs ----------------------------------------------------------------------------------------------------

function subjectArg(commonName: string): string {
  if (typeof commonName !== 'string' || !COMMON_NAME.test(commonName)) {
    throw new Error(
      `common name ${JSON.stringify(commonName)} is not allowed: 1-64 characters of letters, digits, space and . _ : @ -, starting with a letter or digit`,
    );
  }
  return `/CN=${commonName}`;
}

function daysArg(days: number | undefined): string {
  const d = days ?? DEFAULT_CERT_DAYS;
  if (!Number.isInteger(d) || d < 1 || d > MAX_DAYS) throw new Error(`days must be a whole number from 1 to ${MAX_DAYS}, got ${d}`);
  return String(d);
}

function sanLine(ips: string[] = [], dnsNames: string[] = []): string | null {
  const entries: string[] = [];
  for (const ip of ips) {
    // Zone ids (fe80::1%eth0) name a local interface and have no meaning in a certificate.
    if (typeof ip !== 'string' || isIP(ip) === 0 || ip.includes('%')) throw new Error(`SAN IP address ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
    entries.push(`IP:${ip}`);
  }
  for (const name of dnsNames) {
    if (typeof name !== 'string' || !DNS_NAME.test(name)) {
      throw new Error(`SAN DNS name ${JSON.stringify(name)} is not a DNS name (labels of letters, digits and inner dashes; an optional leading "*.")`);
    }
    entries.push(`DNS:${name}`);
  }
  return entries.length === 0 ? null : entries.join(',');
}

function leafExtensions(sans: string | null): string[] {
  return [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = serverAuth,clientAuth',
    'subjectKeyIdentifier = hash',
    ...(sans === null ? [] : [`subjectAltName = ${sans}`]),
  ];
}

function extFile(lines: string[]): string {
  return `[ext]\n${lines.join('\n')}\n`;
}

// ---- openssl ---------------------------------------------------------------------------------------------------

/**
 * Runs one openssl command that signs with `key`: `build` writes the public inputs into the private temp directory and
 * returns the arguments, using `keyArgs(option)` where the command names its signing key. Returns the PEM openssl
 * printed.
 */
async function withSigningKey(
  key: KeyObject,
  build: (dir: string, keyArgs: (option: string) => string[]) => Promise<string[]>,
): Promise<string> {
  // mkdtemp creates the directory 0700, so other local users cannot read or swap the files openssl is given.
  const dir = await mkdtemp(join(tmpdir(), 'buckyos-cert-'));
  try {
    const passphrase = randomBytes(32).toString('base64url');
    const keyPath = join(dir, 'signing.key.pem');
    await writeFile(keyPath, key.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase }), { mode: 0o600 });
    const args = await build(dir, (option) => [option, keyPath, '-passin', 'stdin']);
    return await openssl(args, `${passphrase}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs openssl with `stdin` on its standard input and returns its standard output (the PEM it wrote). */
function openssl(args: string[], stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: OPENSSL_TIMEOUT_MS,
      // The system's openssl.cnf may change defaults (digests, security level); a certificate must not depend on it.
      env: { ...process.env, OPENSSL_CONF: '/dev/null' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    // openssl may exit (on a bad argument) before reading its stdin; the EPIPE that follows says nothing more.
    child.stdin.on('error', () => {});
    child.on('error', (e) => reject(new Error(`cannot run openssl (${args[0]} ${args[1]}): ${e.message}`)));
    child.on('close', (code, signal) => {
      const pem = Buffer.concat(out).toString('utf8');
      if (code === 0 && pem.includes('-----BEGIN CERTIFICATE-----')) resolve(pem);
      else {
        const stderr = Buffer.concat(err).toString('utf8').trim().split('\n').slice(0, 5).join('; ');
        reject(new Error(`openssl ${args[0]} ${args[1]} failed (${signal ?? `exit ${code}`}): ${stderr || 'no certificate written'}`));
      }
    });
    child.stdin.end(stdin);
  });
}
