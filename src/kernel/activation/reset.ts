// `buckyos reset`: returns a device to the unactivated state. zone.json goes first, because its presence is what
// "activated" means: if the reset is interrupted, the device is already unactivated and the leftovers are overwritten
// by the next activation. Run it with node_daemon stopped.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { NodePaths } from '../../lib/config/node-config.ts';
import { IDENTITY_FILES } from '../../lib/identity/node-identity.ts';

export interface ResetReport {
  /** Absolute paths that existed and were removed, in removal order. */
  removed: string[];
  /** Absolute paths that exist and were deliberately left in place. */
  kept: string[];
}

const IDENTITY_ORDER = [
  IDENTITY_FILES.zone, IDENTITY_FILES.deviceKey, IDENTITY_FILES.verifyHubKey, IDENTITY_FILES.enrolKey, IDENTITY_FILES.ownerAdmin, IDENTITY_FILES.peers,
];

/** Directories under data/ that belong to the zone identity rather than to the user's data. */
export const ZONE_STATE_DIRS = ['system-config'];

export function resetNode(paths: NodePaths, opts: { keepData: boolean }): ResetReport {
  const removed: string[] = [];
  const remove = (path: string): void => {
    if (!existsSync(path)) return;
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  };
  for (const name of IDENTITY_ORDER) remove(join(paths.etc, name));
  // Temporary files of an atomic write interrupted by a crash (keys.ts writeFileAtomic names them <file>.tmp-...).
  if (existsSync(paths.etc)) {
    for (const name of readdirSync(paths.etc).sort()) {
      if (IDENTITY_ORDER.some((f) => name.startsWith(`${f}.tmp-`))) remove(join(paths.etc, name));
    }
  }
  // The zone's configuration store holds its users, credentials, sessions and documents: all bound to the identity
  // just removed. Kept, it would hand the next zone the old accounts (and the old owner's password), so it always goes.
  for (const dir of ZONE_STATE_DIRS) remove(join(paths.data, dir));
  if (!opts.keepData) remove(paths.data);
  const kept = [paths.nodeConfig, paths.logs, ...(opts.keepData ? [paths.data] : [])].filter((p) => existsSync(p));
  return { removed, kept };
}
