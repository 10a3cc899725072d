// The verify-hub kRPC declaration (DESIGN §5): logins, token refresh with rotation, sudo, and user and session
// management. Server, client and docs all derive from this one object; docs/verify-hub.md explains the flows.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';
import { DEVICE_ROLES, deviceName, enrolPeerSchema, userName } from '../identity/names.ts';
import { USER_ROLES } from '../rbac/default-policy.ts';

export const userRole = z.enum(USER_ROLES);
export type UserRole = z.infer<typeof userRole>;

/** Same syntax as RBAC subjects, so an app id can always be checked. A login accepts only the trusted UI
 * (control-panel, buckyos-cli) or an app installed for the user; never a system service or role. */
export const appId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'app id: 1-64 letters, digits, . _ or -');

/** Long enough for any passphrase, short enough that hashing it costs nothing extra. */
export const MAX_PASSWORD_LENGTH = 1024;
export const MIN_PASSWORD_LENGTH = 10;

/**
 * Whether a new password keeps each of verify-hub's strength rules: at least MIN_PASSWORD_LENGTH characters (code
 * points), at least two kinds of character (lower-case, upper-case, digits, symbols), not containing the user name
 * (no name yet contains nothing). Here, free of Node, so verify-hub, activation's stricter admin rules and the pages
 * that show the rules as a password is typed all apply the same ones.
 */
export function passwordStrength(password: string, user: string): { length: boolean; kinds: boolean; no_user: boolean } {
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(password)).length;
  const name = user.trim().toLowerCase();
  return {
    length: [...password].length >= MIN_PASSWORD_LENGTH,
    kinds: kinds >= 2,
    no_user: name === '' || !password.toLowerCase().includes(name),
  };
}
const password = z.string().min(1, 'password is empty').max(MAX_PASSWORD_LENGTH, `password is longer than ${MAX_PASSWORD_LENGTH} characters`);

const unixSec = z.number().int();

export const publicUser = z.object({
  name: z.string(),
  role: userRole,
  state: z.enum(['active', 'disabled']),
  created_at: unixSec,
  /** The zone owner: always admin, never disabled or deleted. */
  owner: z.boolean(),
});

const tokens = z.object({
  /** Access token for every kRPC call (sys[1]); expires after 15 minutes. */
  session_token: z.string(),
  /** Opaque, single-use; trade it at `refresh` for a new pair before `refresh_expires_at`. */
  refresh_token: z.string(),
  expires_at: unixSec,
  refresh_expires_at: unixSec,
  user: z.object({ name: z.string(), role: userRole }),
});

const session = z.object({
  sid: z.string(),
  user: z.string(),
  app: z.string(),
  login: z.enum(['password', 'owner_key', 'device_key']),
  created_at: unixSec,
  expires_at: unixSec,
  last_refresh_at: unixSec.nullable(),
  revoked: z.boolean(),
  /** The session the call was made with. */
  current: z.boolean(),
});

const nameParams = z.object({ name: userName }).strict();

const b64Key = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an Ed25519 public key in base64url (43 characters)');
const jwt = z.string().min(1).max(16 * 1024);
const pem = z.string().min(1).max(4096);

export const OFFER_TTL_SEC = { min: 60, max: 24 * 3600, default: 15 * 60 } as const;

const zoneDevice = z.object({
  name: z.string(),
  role: z.enum(DEVICE_ROLES),
  did: z.string(),
  /** online: reported within the last 90 s; offline: reported before that; unknown: never reported. */
  state: z.enum(['online', 'offline', 'unknown']),
  addresses: z.array(z.string()),
  last_seen: unixSec.nullable(),
  /** The device whose verify-hub answered. */
  current: z.boolean(),
});

export const verifyHubApi = defineService('verify-hub', 'Logins, session and sudo tokens, refresh-token rotation, and the zone\'s users.', {
  login_nonce: method({
    params: z.object({}).strict(),
    result: z.object({ nonce: z.string(), expires_at: unixSec }),
    auth: 'none',
    doc: 'A single-use nonce, valid 60 seconds, that every login must carry. Rate-limited per client address (RATE_LIMITED with data.retry_after_ms); an address holds at most 16 outstanding nonces, its oldest giving way to a new one.',
  }),
  login_password: method({
    params: z.object({ username: userName, password, nonce: z.string().min(1).max(128), app_id: appId }).strict(),
    result: tokens,
    auth: 'none',
    doc: 'Password login. Rate-limited per client address and per user name; 5 consecutive failures lock the account for 15 minutes (RATE_LIMITED with data.locked_until). A wrong password and an unknown user answer the same UNAUTHENTICATED. app_id must be control-panel, buckyos-cli or an app installed for the user (PERMISSION_DENIED otherwise); a system service or role is INVALID_PARAMS.',
  }),
  login_jwt: method({
    params: z.object({ jwt: z.string().min(1).max(8192), app_id: appId }).strict(),
    result: tokens,
    auth: 'none',
    doc: 'Key login: an EdDSA JWT {typ:"login", sub, nonce, exp} living at most 5 minutes, signed by the owner key (sub must be the owner) or by the key of a core device (header kid did:dev:..., sub an active user; the key of a storage, portable or gateway device is refused). app_id as for login_password.',
  }),
  refresh: method({
    params: z.object({ refresh_token: z.string().min(1).max(256) }).strict(),
    result: tokens,
    auth: 'none',
    doc: 'Trades a refresh token for a new session token and a NEW refresh token. Presenting a refresh token that was already used revokes the whole session (UNAUTHENTICATED). Serialise refreshes: two in flight with one token end the session.',
  }),
  logout: method({
    params: z.object({}).strict(),
    result: z.object({ sid: z.string() }),
    doc: 'Revokes the calling session: its refresh token stops working at once.',
  }),
  sudo: method({
    params: z.object({ password }).strict(),
    result: z.object({ sudo_token: z.string(), expires_at: unixSec }),
    doc: 'Re-checks the caller\'s password and answers a 5-minute sudo token for dangerous actions (counts toward lockout).',
  }),
  whoami: method({
    params: z.object({}).strict(),
    result: z.object({
      user: z.string(),
      kind: z.enum(['session', 'sudo', 'service']),
      app: z.string(),
      role: userRole.nullable(),
      owner: z.boolean(),
      session_id: z.string().nullable(),
      expires_at: unixSec,
    }),
    doc: 'Who the token belongs to. role is null for kernel service tokens.',
  }),
  user_create: method({
    params: z.object({ name: userName, password, role: userRole }).strict(),
    result: publicUser,
    doc: 'Admins (creating an admin needs a sudo token) and kernel service tokens. The name must not be a reserved system name; the password must pass the strength rules.',
  }),
  user_list: method({
    params: z.object({}).strict(),
    result: z.object({ users: z.array(publicUser) }),
    doc: 'Admins and kernel services see every user (RBAC read on obj://user/* for the user and the app: an installed app holding an admin\'s session sees only that admin); anyone else sees only themselves.',
  }),
  user_set_role: method({
    params: z.object({ name: userName, role: userRole }).strict(),
    result: publicUser,
    doc: 'Admin with a sudo token, or a kernel service token. The owner\'s role cannot change.',
  }),
  user_set_password: method({
    params: z.object({ name: userName, old_password: password.optional(), new_password: password }).strict(),
    result: z.object({ revoked_sessions: z.number().int() }),
    doc: 'Own password with old_password (or a sudo token; an account without a password yet needs neither); another user\'s password: admin with a sudo token, or a kernel service token. The owner\'s password only the owner or a kernel service token may set. Ends that user\'s other sessions.',
  }),
  user_disable: method({
    params: nameParams,
    result: publicUser,
    doc: 'Admins and kernel service tokens. A disabled user cannot log in or refresh; their sessions are revoked. The owner cannot be disabled.',
  }),
  user_enable: method({
    params: nameParams,
    result: publicUser,
    doc: 'Admins and kernel service tokens.',
  }),
  user_delete: method({
    params: nameParams,
    result: z.object({ deleted_keys: z.number().int(), revoked_sessions: z.number().int() }),
    doc: 'Admin with a sudo token, or a kernel service token. Revokes every session of the user and deletes users/<name>/... and their credentials. The owner cannot be deleted.',
  }),
  session_list: method({
    params: z.object({ user: userName.optional(), all: z.boolean().default(false) }).strict(),
    result: z.object({ sessions: z.array(session) }),
    doc: 'The caller\'s sessions; admins may name another user or ask for all (RBAC read on obj://user/<name>/sessions, or obj://user/*/sessions for all, for the user and the app); a kernel service token sees all unless it names a user.',
  }),
  device_offer: method({
    params: z
      .object({
        role: z.enum(DEVICE_ROLES),
        name: deviceName.optional(),
        ttl_sec: z.number().int().min(OFFER_TTL_SEC.min).max(OFFER_TTL_SEC.max).default(OFFER_TTL_SEC.default),
      })
      .strict(),
    result: z.object({
      id: z.string(),
      /** The join code: give it to the new device (`buckyos join <code>`, or its activation page). Shown once. */
      code: z.string(),
      /** The same offer as a URI, for a QR code. */
      qr_payload: z.string(),
      role: z.enum(DEVICE_ROLES),
      name: z.string().nullable(),
      expires_at: unixSec,
    }),
    doc: 'Admin with a sudo token, or a kernel service token. Issues a one-time enrolment offer signed by the zone enrolment key: the device that presents it (once, before expires_at) joins the zone with the given role. The zone keeps only a hash of its secret.',
  }),
  device_enrol: method({
    params: z
      .object({
        offer_id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
        secret: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
        device_name: deviceName,
        device_key: b64Key,
        /** EdDSA JWT {typ:"enrol-proof", offer, exp} signed by device_key: the device holds the key it enrols. */
        proof: jwt,
      })
      .strict(),
    result: z.object({
      owner_key: b64Key,
      zone_boot_jwt: jwt,
      owner_doc_jwt: jwt.nullable(),
      device_doc_jwt: jwt,
      peers: z.array(enrolPeerSchema),
      /** For a core device only: the zone's verify-hub and enrolment private keys (PKCS#8 PEM), so it can serve logins
       * and enrol devices when the first device is away. Sent only through the tunnel's TLS. */
      core_keys: z.object({ verify_hub_key: pem, enrol_key: pem }).nullable(),
    }),
    auth: 'none',
    doc: 'Called by a joining device (through the tunnel port, without a device certificate yet) with an offer\'s id and secret. Single use: the offer is spent in the same transaction that writes devices/<name>/doc. UNAUTHENTICATED: unknown, spent or expired offer, or wrong secret; ALREADY_EXISTS: the device name is taken; INVALID_PARAMS: the name differs from the one the offer fixed, the key was revoked, or the proof does not verify. Rate-limited per client address.',
  }),
  device_list: method({
    params: z.object({}).strict(),
    result: z.object({ devices: z.array(zoneDevice) }),
    doc: 'Admins and kernel services: the zone\'s devices (verified documents, revoked ones left out) with their last report.',
  }),
  device_remove: method({
    params: z.object({ name: deviceName, force: z.boolean().default(false), ignore_quorum: z.boolean().default(false) }).strict(),
    result: z.object({ name: z.string(), did: z.string(), deleted_keys: z.number().int() }),
    doc: 'Admin with a sudo token, or a kernel service token. Revokes the device: its document goes, its key is listed in devices/<name>/revoked so the document is refused even if written back, and every service stops accepting its tokens and tunnels at once. The device answering the call, the last core device, and the device holding the zone\'s SQLite store cannot be removed. A core device needs force (it holds the zone\'s signing keys, which cannot be rotated yet). Removing a member of the zone\'s etcd cluster that would leave fewer healthy members than the quorum is refused (FAILED_PRECONDITION, saying how many would remain) unless ignore_quorum is set; force does not override it.',
  }),
  session_revoke: method({
    params: z.object({ sid: z.string().min(1).max(64) }).strict(),
    result: z.object({ sid: z.string() }),
    doc: 'Revokes one of the caller\'s sessions, or (admin, kernel service token) anyone\'s.',
  }),
});
