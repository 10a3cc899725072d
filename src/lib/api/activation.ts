// The activation kRPC declaration (DESIGN §3, §5): the bootstrap service an unactivated device runs on its LAN port.
// No method needs a token, because before activation there is no zone to issue one; what makes `commit` safe is
// that every document it accepts must carry the owner's signature and the keys this device generated in `prepare`.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';
import { deviceName } from '../identity/names.ts';
import { MIN_PASSWORD_LENGTH, passwordStrength } from './verify-hub.ts';

const b64Key = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an Ed25519 public key in base64url (43 characters)');
const jwt = z.string().min(1).max(16 * 1024);

/** The system facts node_daemon also reports as devices/<node>/info, plus what only activation knows. */
export const deviceInfoSchema = z.object({
  /** A valid device name derived from the host name, offered as the default. */
  name: z.string(),
  activated: z.boolean(),
  version: z.string(),
  hostname: z.string(),
  arch: z.string(),
  platform: z.string(),
  kernel: z.string(),
  cpu: z.object({ model: z.string(), count: z.number().int(), load1: z.number() }),
  memory: z.object({ total_bytes: z.number(), free_bytes: z.number() }),
  /** Mounted block devices; `free_bytes` is what an unprivileged process may use. */
  disks: z.array(z.object({ mount: z.string(), device: z.string(), fstype: z.string(), size_bytes: z.number(), free_bytes: z.number() })),
  /** Non-loopback addresses, IPv4 and IPv6. */
  addresses: z.array(z.object({ iface: z.string(), family: z.enum(['IPv4', 'IPv6']), address: z.string() })),
  uptime_sec: z.number(),
});
export type DeviceInfo = z.infer<typeof deviceInfoSchema>;

/** Another unactivated device this one heard announce itself on the LAN (mDNS `_buckyos._tcp`). */
export const discoveredDeviceSchema = z.object({
  /** The device's suggested name (from its host name). */
  name: z.string(),
  /** The address its announcement came from, on this device's LAN. */
  address: z.string(),
  /** Its activation port. */
  port: z.number().int().min(1).max(65535),
  /** Its activation page. */
  url: z.string(),
  version: z.string(),
  /** Unix milliseconds of its last announcement or answer. */
  seen_at: z.number(),
});
export type DiscoveredDevice = z.infer<typeof discoveredDeviceSchema>;

export const activationApi = defineService(
  'activation',
  'Device bootstrap: an unactivated device offers fresh keys (prepare), the owner signs the zone documents with the key from their recovery phrase, and the device verifies and stores them (commit).',
  {
    prepare: method({
      params: z.object({ device_name: deviceName.optional() }).strict(),
      result: z.object({
        attempt_id: z.string(),
        device_name: z.string(),
        device_key: b64Key,
        device_did: z.string(),
        verify_hub_key: b64Key,
        /** The zone enrolment key the owner delegates device enrolment to (named in the zone boot config). */
        enrol_key: b64Key,
        /** Unix seconds after which commit refuses this attempt. */
        expires_at: z.number().int(),
        device_info: deviceInfoSchema,
      }),
      auth: 'none',
      doc: 'Generates, in memory only, this device\'s key and the zone\'s verify-hub and enrolment keys for one activation attempt (valid 10 minutes). Nothing is written to disk. FAILED_PRECONDITION if the device is already activated.',
    }),
    join: method({
      params: z
        .object({
          /** The join code from `buckyos device add` (or its QR URI). */
          offer: z.string().min(1).max(16 * 1024),
          /** Used when the offer does not fix the name; defaults to the name derived from the host name. */
          device_name: deviceName.optional(),
        })
        .strict(),
      result: z.object({ zone: z.string(), device_name: z.string(), device_did: z.string(), role: z.string() }),
      auth: 'none',
      doc: 'Joins the zone of an enrolment offer: generates this device\'s key, enrols it with a core device named in the offer (through its tunnel port, checking that device\'s key), verifies the documents the zone sends against the offer and the owner-signed boot config, then writes the identity files (zone.json last). INVALID_PARAMS: not an offer, expired, or the zone\'s answer does not match it; UNAUTHENTICATED: the zone refused the offer (used, expired, revoked); ALREADY_EXISTS: the name is taken; UNAVAILABLE: no core device reachable; FAILED_PRECONDITION: already activated.',
    }),
    discover: method({
      params: z.object({}).strict(),
      result: z.object({
        /** Whether this device is listening for announcements (mDNS runs only when the activation port is on the LAN). */
        searching: z.boolean(),
        devices: z.array(discoveredDeviceSchema),
      }),
      auth: 'none',
      doc: 'The other unactivated devices this one has heard announce themselves on the LAN (mDNS `_buckyos._tcp`), with their activation pages, so a browser (which cannot do mDNS) can open them. Each call also asks the LAN again. Activated devices do not announce.',
    }),
    status: method({
      params: z.object({}).strict(),
      result: z.object({
        activated: z.boolean(),
        /** The zone, once activated. */
        zone: z.string().optional(),
        /** The port of the system UI the zone serves once it runs. */
        ui_port: z.number().int(),
        /** Whether that UI answers yet (checked from this device); after a commit the activation service keeps
         * answering this until it does, so the activation page knows when to open it. */
        ui_ready: z.boolean(),
      }),
      auth: 'none',
      doc: 'Whether this device is activated and, once it is, whether its system UI answers yet. After a successful commit the activation port stays open, answering only this and GET /device, until the system UI answers (or a few minutes pass).',
    }),
    commit: method({
      params: z
        .object({
          attempt_id: z.string().min(1).max(64),
          owner_key: b64Key,
          zone_boot_jwt: jwt,
          device_doc_jwt: jwt,
          owner_doc_jwt: jwt,
          admin_password: z.string().max(1024),
        })
        .strict(),
      result: z.object({ zone: z.string(), zone_did: z.string(), device_name: z.string(), device_did: z.string(), owner: z.string() }),
      auth: 'none',
      doc: 'Verifies the owner-signed zone boot config, device document and owner document against owner_key and the keys of the attempt, checks the admin password, then writes the identity files (zone.json last). On any failure nothing is written. UNAUTHENTICATED: a signature does not verify; INVALID_PARAMS: a document or the password breaks a rule (the message names it); FAILED_PRECONDITION: unknown or expired attempt, or already activated; RATE_LIMITED: too many commits.',
    }),
  },
);

// Lower-cased; only entries that would pass the length and character-class rules matter.
const COMMON_PASSWORDS = new Set([
  'password123', 'password1234', 'password12345', 'passw0rd123', 'p@ssw0rd123', 'p@ssword123', 'qwerty12345',
  'qwerty123456', 'qwertyuiop1', '1q2w3e4r5t', '1q2w3e4r5t6y', '1qaz2wsx3edc', 'zaq12wsxcde', 'abc1234567',
  'abcd123456', 'a123456789', '123456789a', '1234567890a', 'admin12345', 'admin123456', 'administrator1',
  'changeme123', 'welcome123', 'welcome1234', 'letmein123', 'iloveyou123', 'trustno1234', 'sunshine123',
  'princess123', 'football123', 'baseball123', 'superman123', 'starwars123', 'dragon12345', 'monkey12345',
  'buckyos123', 'buckyos1234',
]);

export type PasswordRule = 'length' | 'kinds' | 'no_user' | 'no_zone' | 'not_common';

/** Each admin password rule and whether `password` keeps it, in the order they are checked (a page shows them as a
 * checklist while the password is typed). */
export function adminPasswordRules(password: string, ctx: { user: string; zone: string }): { rule: PasswordRule; ok: boolean }[] {
  const lower = password.toLowerCase();
  const kept = passwordStrength(password, ctx.user);
  return [
    { rule: 'length', ok: kept.length },
    { rule: 'kinds', ok: kept.kinds },
    { rule: 'no_user', ok: kept.no_user },
    { rule: 'no_zone', ok: ctx.zone === '' || !lower.includes(ctx.zone.toLowerCase()) },
    { rule: 'not_common', ok: !COMMON_PASSWORDS.has(lower) },
  ];
}

const RULE_SENTENCES: Record<PasswordRule, string> = {
  length: `admin password is too short: use at least ${MIN_PASSWORD_LENGTH} characters`,
  kinds: 'admin password uses only one kind of character: mix letters with digits, capitals or symbols',
  no_user: 'admin password must not contain the user name',
  no_zone: 'admin password must not contain the zone name',
  not_common: 'admin password is on the list of commonly used passwords',
};

/**
 * The admin password rules, shared by the device (which enforces them) and clients (which can say so before an
 * attempt); they include verify-hub's rules for new passwords, so the first password is never weaker than later ones.
 * Returns the first broken rule as a sentence, or null when the password is acceptable.
 */
export function adminPasswordProblem(password: string, ctx: { user: string; zone: string }): string | null {
  const broken = adminPasswordRules(password, ctx).find((r) => !r.ok);
  return broken ? RULE_SENTENCES[broken.rule] : null;
}
