import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICE_ROLES } from '../identity/names.ts';
import type { Principal } from '../krpc/index.ts';
import { DEFAULT_POLICY } from './default-policy.ts';
import { Rbac, accessRequest, casbinReference, parsePolicyCsv, requesterText, ruleText, type AccessRequest, type RequestDevice } from './enforcer.ts';

// A small zone: carol is the owner (admin), alice and bob are members, dave is a limited account, gina a guest;
// share and notes are installed apps.
const TAIL = `g, carol, admin
g, alice, user
g, bob, user
g, dave, limited
g, gina, guest
g2, share, app
g2, notes, app
`;

type Who = { user: string; app: string; device?: RequestDevice };
type Case = readonly [resource: string, action: string, who?: Partial<Who>];
interface RuleCases {
  rule: string;
  who: Who;
  allow: Case[];
  deny: Case[];
}

const CLI = 'buckyos-cli';
const cli = (user: string): Who => ({ user, app: CLI });
/** node_daemon on a device: the kernel on the user and app sides, so only the device side can refuse. */
const kernelOn = (name: string, role: string): Who => ({ user: 'node-daemon', app: 'node-daemon', device: { name, role } });
const NAS = kernelOn('nas1', 'storage');
const GW = kernelOn('gw1', 'gateway');
const on = (name: string, role: string): Partial<Who> => ({ device: { name, role } });

// The frame rules are the same on both sides; on the user side the service calls as itself (klog, klog), on the app
// side klog serves a kernel caller so that only the app side can refuse.
function frameCases(ptype: 'p' | 'p2'): RuleCases[] {
  const self = ptype === 'p' ? '{user}' : '{app}';
  const who: Who = ptype === 'p' ? { user: 'klog', app: 'klog' } : { user: 'scheduler', app: 'klog' };
  const r = (pattern: string, actions: string) => `${ptype}, frame, ${pattern}, ${actions}`;
  return [
    {
      rule: r('obj://config/boot/config', 'read'),
      who,
      allow: [['obj://config/boot/config', 'read'], ['obj://config/boot/config', 'read', { user: ptype === 'p' ? 'klog' : 'carol' }], ['obj://config/boot/config', 'read', { user: ptype === 'p' ? 'klog' : 'alice' }]],
      deny: [['obj://config/boot/config', 'write'], ['obj://config/boot/other', 'read'], ['obj://config/boot/config/x', 'read']],
    },
    {
      rule: r('obj://config/devices/**', 'read'),
      who,
      allow: [['obj://config/devices/ood1/doc', 'read'], ['obj://config/devices/ood1/info', 'read'], ['obj://config/devices', 'read']],
      deny: [['obj://config/devices/ood1/doc', 'write'], ['obj://config/devices/ood1/info', 'delete'], ['obj://dfs/main/devices', 'read']],
    },
    {
      rule: r('obj://config/nodes/**', 'read'),
      who,
      allow: [['obj://config/nodes/ood1/config', 'read'], ['obj://config/nodes', 'read'], ['obj://config/nodes/ood2/config', 'read']],
      deny: [['obj://config/nodes/ood1/config', 'write'], ['obj://config/nodes/ood1/config', 'create'], ['obj://config/nodesx', 'read']],
    },
    {
      rule: r('obj://config/services/**', 'read'),
      who,
      allow: [['obj://config/services/verify-hub/info', 'read'], ['obj://config/services/scheduler/spec', 'read'], ['obj://config/services/klog/instances/ood1', 'read']],
      deny: [['obj://config/services/scheduler/spec', 'write'], ['obj://config/services/verify-hub/info', 'delete'], ['obj://config/services/scheduler/instances/ood1', 'create']],
    },
    {
      rule: r('obj://config/users/**', 'read'),
      who,
      allow: [['obj://config/users/alice/settings', 'read'], ['obj://config/users/bob/apps/share/spec', 'read'], ['obj://config/users', 'read']],
      deny: [['obj://config/users/alice/settings', 'write'], ['obj://config/users/bob/apps/share/settings', 'write'], ['obj://config/users/alice', 'delete']],
    },
    {
      rule: r('obj://config/storage/**', 'read'),
      who,
      allow: [['obj://config/storage/volumes/main', 'read'], ['obj://config/storage', 'read'], ['obj://config/storage/placement/photos', 'read']],
      deny: [['obj://config/storage/volumes/main', 'write'], ['obj://config/storage/volumes/main', 'create'], ['obj://config/system/keys/verify-hub', 'read']],
    },
    {
      rule: r(`obj://config/services/${self}/**`, 'write|create|delete'),
      who,
      allow: [['obj://config/services/klog/settings', 'write'], ['obj://config/services/klog/state/cursor', 'create'], ['obj://config/services/klog/cache', 'delete']],
      deny: [['obj://config/services/control-panel/settings', 'write'], ['obj://config/services/scheduler/spec', 'write'], ['obj://config/services/klog/settings', 'exec']],
    },
    {
      rule: r('obj://log/**', 'create'),
      who,
      allow: [['obj://log/audit/2024-06-01', 'create'], ['obj://log/node/ood1/klog', 'create'], ['obj://log', 'create']],
      deny: [['obj://log/audit/2024-06-01', 'write'], ['obj://log/audit/2024-06-01', 'delete'], ['obj://log/audit/2024-06-01', 'read']],
    },
  ];
}

const RULES: RuleCases[] = [
  // ---------------------------------------------------------------------------------------------------- user side
  {
    rule: 'p, kernel, obj://**, *',
    who: { user: 'scheduler', app: 'scheduler' },
    allow: [['obj://config/system/rbac/policy', 'write'], ['obj://system/tokens/service', 'create', { user: 'node-daemon', app: 'node-daemon' }], ['obj://log/audit/2024', 'delete', { user: 'verify-hub', app: 'verify-hub' }]],
    deny: [['obj://config/boot/../system/keys', 'read'], ['obj://config/boot/config', 'sudo'], ['obj://config/boot/config', 'read', { user: 'mallory' }]],
  },
  ...frameCases('p'),
  {
    rule: 'p, guest, obj://config/boot/config, read',
    who: cli('gina'),
    allow: [['obj://config/boot/config', 'read'], ['obj://config/boot/config', 'read', { user: 'dave' }], ['obj://config/boot/config', 'read', { user: 'alice' }]],
    deny: [['obj://config/boot/config', 'write'], ['obj://config/devices/ood1/info', 'read'], ['obj://config/users/gina/settings', 'read']],
  },
  {
    rule: 'p, guest, obj://config/zone/settings, read',
    who: cli('gina'),
    allow: [['obj://config/zone/settings', 'read'], ['obj://config/zone/settings', 'read', { user: 'dave' }], ['obj://config/zone/settings', 'read', { user: 'alice' }]],
    deny: [['obj://config/zone/settings', 'write'], ['obj://config/zone/settings/x', 'read'], ['obj://config/zone/other', 'read']],
  },
  {
    rule: 'p, guest, obj://dfs/*/public/**, read',
    who: cli('gina'),
    allow: [['obj://dfs/main/public/a.txt', 'read'], ['obj://dfs/backup/public', 'read'], ['obj://dfs/main/public/x/y/z.mp4', 'read']],
    deny: [['obj://dfs/main/public/a.txt', 'write'], ['obj://dfs/main/home/gina/a.txt', 'read'], ['obj://dfs/public/a.txt', 'read']],
  },
  {
    rule: 'p, limited, obj://config/devices/*/info, read',
    who: cli('dave'),
    allow: [['obj://config/devices/ood1/info', 'read'], ['obj://config/devices/phone/info', 'read'], ['obj://config/devices/ood1/info', 'read', { user: 'alice' }]],
    deny: [['obj://config/devices/ood1/doc', 'read'], ['obj://config/devices/ood1/info', 'write'], ['obj://config/devices/ood1/info/x', 'read']],
  },
  {
    rule: 'p, limited, obj://config/services/*/info, read',
    who: cli('dave'),
    allow: [['obj://config/services/verify-hub/info', 'read'], ['obj://config/services/share/info', 'read'], ['obj://config/services/klog/info', 'read', { user: 'alice' }]],
    deny: [['obj://config/services/verify-hub/spec', 'read'], ['obj://config/services/verify-hub/info', 'write'], ['obj://config/services/share/instances/ood1', 'read']],
  },
  {
    rule: 'p, limited, obj://config/users/{user}/**, read',
    who: cli('dave'),
    allow: [['obj://config/users/dave/settings', 'read'], ['obj://config/users/dave/apps/share/settings', 'read'], ['obj://config/users/dave', 'read']],
    deny: [['obj://config/users/alice/settings', 'read'], ['obj://config/users/dave/settings', 'write'], ['obj://config/users/dave/apps/share/settings', 'write']],
  },
  {
    rule: 'p, limited, obj://dfs/*/home/{user}/**, read',
    who: cli('dave'),
    allow: [['obj://dfs/main/home/dave/a.txt', 'read'], ['obj://dfs/usb/home/dave', 'read'], ['obj://dfs/main/home/alice/doc.md', 'read', { user: 'alice' }]],
    deny: [['obj://dfs/main/home/dave/a.txt', 'write'], ['obj://dfs/main/home/alice/a.txt', 'read'], ['obj://dfs/main/home', 'read']],
  },
  {
    rule: 'p, limited, obj://user/{user}/**, read',
    who: cli('dave'),
    allow: [['obj://user/dave', 'read'], ['obj://user/dave/sessions', 'read'], ['obj://user/alice', 'read', { user: 'alice' }]],
    deny: [['obj://user/alice', 'read'], ['obj://user/dave', 'delete'], ['obj://user', 'read']],
  },
  {
    rule: 'p, limited, obj://user/{user}/password, write',
    who: cli('dave'),
    allow: [['obj://user/dave/password', 'write'], ['obj://user/alice/password', 'write', { user: 'alice' }], ['obj://user/bob/password', 'write', { user: 'bob' }]],
    deny: [['obj://user/alice/password', 'write'], ['obj://user/gina/password', 'write', { user: 'gina' }], ['obj://user/dave/password', 'delete']],
  },
  {
    rule: 'p, limited, obj://user/{user}/sessions, write',
    who: cli('dave'),
    allow: [['obj://user/dave/sessions', 'write'], ['obj://user/alice/sessions', 'write', { user: 'alice' }], ['obj://user/bob/sessions', 'write', { user: 'bob' }]],
    deny: [['obj://user/alice/sessions', 'write'], ['obj://user/gina/sessions', 'write', { user: 'gina' }], ['obj://user/dave/sessions', 'delete']],
  },
  {
    rule: 'p, limited, obj://app/**, read|exec',
    who: cli('dave'),
    allow: [['obj://app/share', 'exec'], ['obj://app/share/icon', 'read'], ['obj://app', 'read']],
    deny: [['obj://app/share', 'delete'], ['obj://app/share', 'create'], ['obj://app/share', 'exec', { user: 'gina' }]],
  },
  {
    rule: 'p, user, obj://config/users/{user}/apps/*/settings/**, write|create|delete',
    who: cli('alice'),
    allow: [['obj://config/users/alice/apps/share/settings', 'write'], ['obj://config/users/alice/apps/control-panel/settings/theme', 'create'], ['obj://config/users/alice/apps/notes/settings', 'delete']],
    deny: [['obj://config/users/alice/settings', 'write'], ['obj://config/users/alice/apps/share/spec', 'write'], ['obj://config/users/bob/apps/share/settings', 'write']],
  },
  {
    rule: 'p, user, obj://dfs/*/home/{user}/**, write|create|delete',
    who: cli('alice'),
    allow: [['obj://dfs/main/home/alice/a.txt', 'write'], ['obj://dfs/main/home/alice/photos/b.jpg', 'create'], ['obj://dfs/usb/home/alice/old', 'delete']],
    deny: [['obj://dfs/main/home/bob/a.txt', 'write'], ['obj://dfs/main/home/dave/a.txt', 'write', { user: 'dave' }], ['obj://dfs/main/home/alice/../bob/a.txt', 'write']],
  },
  {
    rule: 'p, user, obj://dfs/*/public/**, write|create|delete',
    who: cli('alice'),
    allow: [['obj://dfs/main/public/x', 'create'], ['obj://dfs/main/public/x', 'write'], ['obj://dfs/main/public/x', 'delete', { user: 'bob' }]],
    deny: [['obj://dfs/main/public/x', 'write', { user: 'gina' }], ['obj://dfs/main/public/x', 'create', { user: 'dave' }], ['obj://dfs/main/publicity/x', 'write']],
  },
  {
    rule: 'p, admin, obj://config/devices/**, read',
    who: cli('carol'),
    allow: [['obj://config/devices/ood1/doc', 'read'], ['obj://config/devices', 'read'], ['obj://config/devices/ood1/info', 'read']],
    deny: [['obj://config/devices/ood1/info', 'write'], ['obj://config/devices/ood1/doc', 'read', { user: 'alice' }], ['obj://config/devices/ood1/info', 'delete']],
  },
  {
    rule: 'p, admin, obj://config/devices/*/doc, write|create|delete',
    who: cli('carol'),
    allow: [['obj://config/devices/ood2/doc', 'write'], ['obj://config/devices/phone/doc', 'create'], ['obj://config/devices/old/doc', 'delete']],
    deny: [['obj://config/devices/ood1/info', 'write'], ['obj://config/devices/ood1/doc', 'write', { user: 'alice' }], ['obj://config/devices/ood1/doc/x', 'write']],
  },
  {
    rule: 'p, admin, obj://config/nodes/**, read',
    who: cli('carol'),
    allow: [['obj://config/nodes/ood1/config', 'read'], ['obj://config/nodes', 'read'], ['obj://config/nodes/ood2/config', 'read']],
    deny: [['obj://config/nodes/ood1/config', 'write'], ['obj://config/nodes/ood1/config', 'read', { user: 'alice' }], ['obj://config/nodes/ood1/config', 'delete']],
  },
  {
    rule: 'p, admin, obj://config/services/**, read',
    who: cli('carol'),
    allow: [['obj://config/services/scheduler/spec', 'read'], ['obj://config/services/scheduler/info', 'read'], ['obj://config/services/scheduler/instances/ood1', 'read']],
    deny: [['obj://config/services/scheduler/info', 'write'], ['obj://config/services/scheduler/instances/ood1', 'write'], ['obj://config/services/scheduler/spec', 'read', { user: 'alice' }]],
  },
  {
    rule: 'p, admin, obj://config/services/*/spec, write|create|delete',
    who: cli('carol'),
    allow: [['obj://config/services/share/spec', 'write'], ['obj://config/services/backup/spec', 'create'], ['obj://config/services/old/spec', 'delete']],
    deny: [['obj://config/services/scheduler/info', 'write'], ['obj://config/services/share/spec', 'write', { user: 'alice' }], ['obj://config/services/share/spec/x', 'write']],
  },
  {
    rule: 'p, admin, obj://config/services/*/config, write|create|delete',
    who: cli('carol'),
    allow: [['obj://config/services/ns/config', 'write'], ['obj://config/services/share/config', 'create'], ['obj://config/services/ns/config', 'delete']],
    deny: [['obj://config/services/ns/records', 'write'], ['obj://config/services/ns/config', 'write', { user: 'alice' }], ['obj://config/services/ns/config/x', 'write']],
  },
  {
    rule: 'p, admin, obj://config/users/**, read',
    who: cli('carol'),
    allow: [['obj://config/users/alice/settings', 'read'], ['obj://config/users/bob/apps/share/spec', 'read'], ['obj://config/users/alice', 'read']],
    deny: [['obj://config/users/alice/settings', 'write'], ['obj://config/users/alice/settings', 'delete'], ['obj://config/users/alice/settings', 'read', { user: 'dave' }]],
  },
  {
    rule: 'p, admin, obj://config/users/*/apps/**, write|create|delete',
    who: cli('carol'),
    allow: [['obj://config/users/bob/apps/share/spec', 'create'], ['obj://config/users/alice/apps/notes/spec', 'write'], ['obj://config/users/alice/apps/notes', 'delete']],
    deny: [['obj://config/users/bob/settings', 'write'], ['obj://config/users/bob/apps/share/spec', 'write', { user: 'alice' }], ['obj://config/users/alice/apps/notes/spec', 'exec']],
  },
  {
    rule: 'p, admin, obj://config/storage/**, read|write|create|delete',
    who: cli('carol'),
    allow: [['obj://config/storage/volumes/main', 'write'], ['obj://config/storage/volumes/main', 'read'], ['obj://config/storage/volumes/usb', 'create']],
    deny: [['obj://config/storage/volumes/main', 'write', { user: 'alice' }], ['obj://config/storage/volumes/main', 'read', { user: 'alice' }], ['obj://config/storage/volumes/main', 'exec']],
  },
  {
    rule: 'p, admin, obj://config/zone/settings, write|create',
    who: cli('carol'),
    allow: [['obj://config/zone/settings', 'write'], ['obj://config/zone/settings', 'create'], ['obj://config/zone/settings', 'write', { app: 'control-panel' }]],
    deny: [['obj://config/zone/settings', 'delete'], ['obj://config/zone/settings', 'write', { user: 'alice' }], ['obj://config/zone/settings/x', 'write']],
  },
  {
    rule: 'p, admin, obj://config/system/rbac/**, read',
    who: cli('carol'),
    allow: [['obj://config/system/rbac/policy', 'read'], ['obj://config/system/rbac', 'read'], ['obj://config/system/rbac/base', 'read']],
    deny: [['obj://config/system/rbac/policy', 'write'], ['obj://config/system/keys/verify-hub', 'read'], ['obj://config/system/rbac/policy', 'read', { user: 'alice' }]],
  },
  {
    rule: 'p, admin, obj://dfs/**, read|write|create|delete',
    who: cli('carol'),
    allow: [['obj://dfs/main/home/alice/x', 'read'], ['obj://dfs/main/home/alice/x', 'write'], ['obj://dfs/usb/anything', 'delete']],
    deny: [['obj://dfs/main/x', 'exec'], ['obj://dfs/main/home/bob/x', 'read', { user: 'alice' }], ['obj://dfs/main/../x', 'read']],
  },
  {
    rule: 'p, admin, obj://app/**, *',
    who: cli('carol'),
    allow: [['obj://app/share', 'create'], ['obj://app/share', 'delete'], ['obj://app/share', 'write']],
    deny: [['obj://app/share', 'create', { user: 'alice' }], ['obj://app/share', 'delete', { user: 'alice' }], ['obj://app/share', 'write', { user: 'dave' }]],
  },
  {
    rule: 'p, admin, obj://user/**, read|write|create|delete',
    who: cli('carol'),
    allow: [['obj://user/alice', 'delete'], ['obj://user/erin', 'create'], ['obj://user/alice/password', 'write']],
    deny: [['obj://user/bob', 'delete', { user: 'alice' }], ['obj://user/erin', 'create', { user: 'alice' }], ['obj://user/alice', 'exec']],
  },
  {
    rule: 'p, admin, obj://system/**, read|exec',
    who: cli('carol'),
    allow: [['obj://system/nodes/ood1', 'exec'], ['obj://system/update', 'exec'], ['obj://system', 'read']],
    deny: [['obj://system/tokens/service', 'create'], ['obj://system/kernel/members', 'write'], ['obj://system/nodes/ood1', 'exec', { user: 'alice' }]],
  },
  {
    rule: 'p, admin, obj://log/**, read',
    who: cli('carol'),
    allow: [['obj://log/audit', 'read'], ['obj://log/node/ood1/klog', 'read'], ['obj://log', 'read']],
    deny: [['obj://log/audit/2024-06-01', 'delete'], ['obj://log/audit/2024-06-01', 'write'], ['obj://log/audit', 'read', { user: 'alice' }]],
  },
  // ----------------------------------------------------------------------------------------------------- app side
  {
    rule: 'p2, kernel, obj://**, *',
    who: { user: 'scheduler', app: 'scheduler' },
    allow: [['obj://config/nodes/ood1/config', 'write'], ['obj://config/services/share/instances/ood1', 'write', { user: 'node-daemon', app: 'node-daemon' }], ['obj://config/system/keys/verify-hub', 'read', { user: 'verify-hub', app: 'verify-hub' }]],
    deny: [['obj://config/system/keys/verify-hub', 'read', { app: 'share' }], ['obj://config/nodes/ood1/config', 'write', { app: 'mallory' }], ['obj://config/nodes/ood1/config', 'own']],
  },
  ...frameCases('p2'),
  {
    rule: 'p2, trusted-ui, obj://**, *',
    who: { user: 'carol', app: 'control-panel' },
    allow: [['obj://config/users/alice/apps/share/spec', 'write'], ['obj://dfs/main/home/alice/x', 'read', { app: CLI }], ['obj://app/share', 'create']],
    deny: [['obj://config/users/alice/apps/share/spec', 'write', { app: 'share' }], ['obj://dfs/main/home/carol/x', 'read', { app: 'notes' }], ['obj://app/share', 'install']],
  },
  {
    rule: 'p2, app, obj://config/boot/config, read',
    who: { user: 'alice', app: 'share' },
    allow: [['obj://config/boot/config', 'read'], ['obj://config/boot/config', 'read', { user: 'bob', app: 'notes' }], ['obj://config/boot/config', 'read', { user: 'carol' }]],
    deny: [['obj://config/boot/config', 'write', { user: 'scheduler' }], ['obj://config/devices/ood1/info', 'read'], ['obj://config/services/verify-hub/info', 'read']],
  },
  {
    rule: 'p2, app, obj://config/users/*/apps/{app}/**, read',
    who: { user: 'alice', app: 'share' },
    allow: [['obj://config/users/alice/apps/share/spec', 'read'], ['obj://config/users/alice/apps/share/settings', 'read'], ['obj://config/users/bob/apps/notes/spec', 'read', { user: 'bob', app: 'notes' }]],
    deny: [['obj://config/users/alice/apps/notes/spec', 'read'], ['obj://config/users/alice/settings', 'read'], ['obj://config/users/alice/apps', 'read']],
  },
  {
    rule: 'p2, app, obj://config/users/*/apps/{app}/settings/**, write|create|delete',
    who: { user: 'carol', app: 'share' },
    allow: [['obj://config/users/alice/apps/share/settings', 'write', { user: 'alice' }], ['obj://config/users/carol/apps/share/settings/cache', 'create'], ['obj://config/users/bob/apps/notes/settings', 'delete', { user: 'bob', app: 'notes' }]],
    deny: [['obj://config/users/carol/apps/share/spec', 'write'], ['obj://config/users/carol/apps/notes/settings', 'write'], ['obj://config/users/carol/apps/share/info', 'write']],
  },
  {
    rule: 'p2, app, obj://dfs/*/home/*/apps/{app}/**, read|write|create|delete',
    who: { user: 'alice', app: 'share' },
    allow: [['obj://dfs/main/home/alice/apps/share/db', 'read'], ['obj://dfs/main/home/alice/apps/share/db', 'write'], ['obj://dfs/main/home/bob/apps/notes/n1.md', 'create', { user: 'bob', app: 'notes' }]],
    deny: [['obj://dfs/main/home/alice/photos/x.jpg', 'read'], ['obj://dfs/main/home/alice/apps/notes/n1.md', 'write'], ['obj://dfs/main/public/x', 'read']],
  },
  // -------------------------------------------------------------------------------------------------- device side
  {
    rule: 'p3, core, obj://**, *',
    who: kernelOn('ood1', 'core'),
    allow: [['obj://config/users/alice/settings', 'write'], ['obj://config/system/rbac/policy', 'write'], ['obj://config/nodes/ood2/config', 'write', on('ood2', 'core')]],
    deny: [['obj://config/users/alice/settings', 'write', on('nas1', 'storage')], ['obj://config/boot/config', 'read', on('ood1', '')], ['obj://config/boot/config', 'sudo']],
  },
  {
    rule: 'p3, edge, obj://config/boot/config, read',
    who: NAS,
    allow: [['obj://config/boot/config', 'read'], ['obj://config/boot/config', 'read', on('pn1', 'portable')], ['obj://config/boot/config', 'read', on('gw1', 'gateway')]],
    deny: [['obj://config/boot/config', 'write'], ['obj://config/boot/config', 'create'], ['obj://config/boot/other', 'read']],
  },
  {
    rule: 'p3, edge, obj://config/devices/**, read',
    who: NAS,
    allow: [['obj://config/devices/ood1/doc', 'read'], ['obj://config/devices/nas2/revoked', 'read'], ['obj://config/devices', 'read']],
    deny: [['obj://config/devices/ood1/doc', 'write'], ['obj://config/devices/nas1/revoked', 'write'], ['obj://config/devices/nas2/doc', 'delete']],
  },
  {
    rule: 'p3, edge, obj://config/services/*/info, read',
    who: NAS,
    allow: [['obj://config/services/gateway/info', 'read'], ['obj://config/services/dfs/info', 'read'], ['obj://config/services/verify-hub/info', 'read', on('gw1', 'gateway')]],
    deny: [['obj://config/services/gateway/info', 'write'], ['obj://config/services/gateway/spec', 'read'], ['obj://config/services/dfs/config', 'read']],
  },
  {
    rule: 'p3, edge, obj://config/system/control/**, read',
    who: NAS,
    allow: [['obj://config/system/control/config-store', 'read'], ['obj://config/system/control/migration', 'read'], ['obj://config/system/control/freeze', 'read']],
    deny: [['obj://config/system/control/migration', 'write'], ['obj://config/system/control/freeze', 'create'], ['obj://config/system/verify-hub/credentials/alice', 'read']],
  },
  {
    rule: 'p3, edge, obj://config/devices/{device}/doc, write',
    who: NAS,
    allow: [['obj://config/devices/nas1/doc', 'write'], ['obj://config/devices/gw1/doc', 'write', on('gw1', 'gateway')], ['obj://config/devices/pn1/doc', 'write', on('pn1', 'portable')]],
    deny: [['obj://config/devices/ood1/doc', 'write'], ['obj://config/devices/nas1/doc', 'create'], ['obj://config/devices/nas1/doc', 'delete']],
  },
  {
    rule: 'p3, edge, obj://config/devices/{device}/info, write',
    who: NAS,
    allow: [['obj://config/devices/nas1/info', 'write'], ['obj://config/devices/gw1/info', 'write', on('gw1', 'gateway')], ['obj://config/devices/pn1/info', 'write', on('pn1', 'portable')]],
    deny: [['obj://config/devices/ood1/info', 'write'], ['obj://config/devices/nas1/info', 'delete'], ['obj://config/devices/nas1/revoked', 'write']],
  },
  {
    rule: 'p3, edge, obj://config/nodes/{device}/config, read|create',
    who: NAS,
    allow: [['obj://config/nodes/nas1/config', 'read'], ['obj://config/nodes/nas1/config', 'create'], ['obj://config/nodes/gw1/config', 'read', on('gw1', 'gateway')]],
    deny: [['obj://config/nodes/nas1/config', 'write'], ['obj://config/nodes/ood1/config', 'read'], ['obj://config/nodes/ood1/config', 'create']],
  },
  {
    rule: 'p3, edge, obj://config/services/*/instances/{device}, write|delete',
    who: NAS,
    allow: [['obj://config/services/gateway/instances/nas1', 'write'], ['obj://config/services/dfs/instances/nas1', 'delete'], ['obj://config/services/ns/instances/gw1', 'write', on('gw1', 'gateway')]],
    deny: [['obj://config/services/gateway/instances/ood1', 'write'], ['obj://config/services/gateway/instances/ood1', 'delete'], ['obj://config/services/gateway/instances/nas1/x', 'write']],
  },
  {
    rule: 'p3, edge, obj://config/storage/**, read',
    who: NAS,
    allow: [['obj://config/storage/volumes/home', 'read'], ['obj://config/storage/disks/nas2/d1', 'read'], ['obj://config/storage', 'read']],
    deny: [['obj://config/storage/volumes/home', 'write'], ['obj://config/storage/disks/nas1/d1', 'create'], ['obj://config/storage/disks/nas1/d1', 'delete']],
  },
  {
    rule: 'p3, edge, obj://config/services/dfs/status/*, read',
    who: NAS,
    allow: [['obj://config/services/dfs/status/nas1', 'read'], ['obj://config/services/dfs/status/nas2', 'read'], ['obj://config/services/dfs/status/ood1', 'read']],
    deny: [['obj://config/services/dfs/status/nas2', 'write'], ['obj://config/services/dfs/spec', 'read'], ['obj://config/services/dfs/status/nas1/x', 'read']],
  },
  {
    rule: 'p3, edge, obj://config/services/dfs/status/{device}, write',
    who: NAS,
    allow: [['obj://config/services/dfs/status/nas1', 'write'], ['obj://config/services/dfs/status/nas2', 'write', on('nas2', 'storage')], ['obj://config/services/dfs/status/pn1', 'write', on('pn1', 'portable')]],
    deny: [['obj://config/services/dfs/status/nas2', 'write'], ['obj://config/services/dfs/status/nas1', 'delete'], ['obj://config/services/dfs/spec', 'write']],
  },
  {
    rule: 'p3, edge, obj://config/users/*/settings, read',
    who: NAS,
    allow: [['obj://config/users/alice/settings', 'read'], ['obj://config/users/bob/settings', 'read'], ['obj://config/users/alice/settings', 'read', on('gw1', 'gateway')]],
    deny: [['obj://config/users/alice/settings', 'write'], ['obj://config/users/mallory/settings', 'create'], ['obj://config/users/alice/apps/share/settings', 'read']],
  },
  {
    rule: 'p3, edge, obj://config/system/rbac/policy, read',
    who: NAS,
    allow: [['obj://config/system/rbac/policy', 'read'], ['obj://config/system/rbac/policy', 'read', on('gw1', 'gateway')], ['obj://config/system/rbac/policy', 'read', on('pn1', 'portable')]],
    deny: [['obj://config/system/rbac/policy', 'write'], ['obj://config/system/rbac/policy', 'create'], ['obj://config/system/rbac/other', 'read']],
  },
  {
    rule: 'p3, gateway, obj://config/services/ns/config, read',
    who: GW,
    allow: [['obj://config/services/ns/config', 'read'], ['obj://config/services/ns/config', 'read', on('gw2', 'gateway')], ['obj://config/services/ns/config', 'read', { user: 'ns', app: 'ns' }]],
    deny: [['obj://config/services/ns/config', 'write'], ['obj://config/services/ns/config', 'read', on('nas1', 'storage')], ['obj://config/services/ns/spec', 'read']],
  },
  {
    rule: 'p3, gateway, obj://config/services/ns/records, read|write',
    who: GW,
    allow: [['obj://config/services/ns/records', 'read'], ['obj://config/services/ns/records', 'write'], ['obj://config/services/ns/records', 'write', on('gw2', 'gateway')]],
    deny: [['obj://config/services/ns/records', 'delete'], ['obj://config/services/ns/records', 'write', on('nas1', 'storage')], ['obj://config/services/ns/records', 'write', on('pn1', 'portable')]],
  },
  {
    rule: 'p3, gateway, obj://config/users/*/apps/*/spec, read',
    who: GW,
    allow: [['obj://config/users/alice/apps/share/spec', 'read'], ['obj://config/users/bob/apps/notes/spec', 'read'], ['obj://config/users/alice/apps/share/spec', 'read', on('gw2', 'gateway')]],
    deny: [['obj://config/users/alice/apps/share/spec', 'write'], ['obj://config/users/alice/apps/share/spec', 'read', on('nas1', 'storage')], ['obj://config/users/alice/apps/share/settings', 'read']],
  },
];

const rbac = await Rbac.create(TAIL);
const reference = await casbinReference(rbac.policyText());

function req(rc: RuleCases, c: Case): AccessRequest {
  const device = c[2]?.device ?? rc.who.device;
  return { user: c[2]?.user ?? rc.who.user, app: c[2]?.app ?? rc.who.app, ...(device ? { device } : {}), resource: c[0], action: c[1] };
}

describe('default policy, rule by rule', () => {
  it('covers every rule of the default policy with at least three allowed and three denied requests', () => {
    const policyRules = parsePolicyCsv(DEFAULT_POLICY)
      .filter((r) => r.ptype === 'p' || r.ptype === 'p2' || r.ptype === 'p3')
      .map(ruleText);
    assert.deepEqual([...RULES.map((r) => r.rule)].sort(), [...policyRules].sort());
    for (const rc of RULES) {
      assert.ok(rc.allow.length >= 3 && rc.deny.length >= 3, rc.rule);
    }
  });

  for (const rc of RULES) {
    const side = rc.rule.startsWith('p2') ? 'appRule' : rc.rule.startsWith('p3') ? 'deviceRule' : 'userRule';
    it(rc.rule, () => {
      for (const c of rc.allow) {
        const r = req(rc, c);
        const d = rbac.explain(r);
        assert.equal(d.allowed, true, `should allow ${JSON.stringify(r)}`);
        assert.equal(d[side], rc.rule, `${JSON.stringify(r)} should be allowed by this rule`);
        assert.equal(rbac.check(r), true);
      }
      for (const c of rc.deny) {
        const r = req(rc, c);
        const d = rbac.explain(r);
        assert.equal(d.allowed, false, `should deny ${JSON.stringify(r)}`);
        assert.equal(d[side], null, `${JSON.stringify(r)} should be refused on the ${side.replace('Rule', '')} side`);
        assert.equal(rbac.check(r), false);
      }
    });
  }

  it('agrees with stock casbin (enforceSync over the same model and policy) on every case', () => {
    for (const rc of RULES) {
      for (const c of [...rc.allow, ...rc.deny]) {
        const r = req(rc, c);
        assert.equal(rbac.check(r), reference(r), JSON.stringify(r));
      }
    }
  });
});

describe('user AND app', () => {
  const cases: { name: string; req: AccessRequest; allowed: boolean; userSide: boolean; appSide: boolean }[] = [
    {
      name: 'user allowed, app not: an app cannot reach beyond its own folder in its user’s home',
      req: { user: 'alice', app: 'share', resource: 'obj://dfs/main/home/alice/photos/a.jpg', action: 'write' },
      allowed: false,
      userSide: true,
      appSide: false,
    },
    {
      name: 'app allowed, user not: an app running for bob cannot reach its folder in alice’s home',
      req: { user: 'bob', app: 'share', resource: 'obj://dfs/main/home/alice/apps/share/db', action: 'read' },
      allowed: false,
      userSide: false,
      appSide: true,
    },
    {
      name: 'app allowed, user not: a limited user’s apps are read-only too',
      req: { user: 'dave', app: 'share', resource: 'obj://dfs/main/home/dave/apps/share/db', action: 'write' },
      allowed: false,
      userSide: false,
      appSide: true,
    },
    {
      name: 'both allowed',
      req: { user: 'alice', app: 'share', resource: 'obj://dfs/main/home/alice/apps/share/db', action: 'write' },
      allowed: true,
      userSide: true,
      appSide: true,
    },
    {
      name: 'a kernel user does not lift an ordinary app',
      req: { user: 'scheduler', app: 'share', resource: 'obj://config/system/rbac/policy', action: 'write' },
      allowed: false,
      userSide: true,
      appSide: false,
    },
    {
      name: 'the control panel calling as itself is bounded to frame, although its app side is trusted',
      req: { user: 'control-panel', app: 'control-panel', resource: 'obj://config/users/alice/settings', action: 'write' },
      allowed: false,
      userSide: false,
      appSide: true,
    },
    {
      name: 'a frame app serving an admin is bounded to frame',
      req: { user: 'carol', app: 'klog', resource: 'obj://dfs/main/home/carol/x', action: 'read' },
      allowed: false,
      userSide: true,
      appSide: false,
    },
    {
      name: 'an unknown app gets nothing, whoever the user',
      req: { user: 'carol', app: 'unknown-app', resource: 'obj://config/boot/config', action: 'read' },
      allowed: false,
      userSide: true,
      appSide: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = rbac.explain(c.req);
      assert.equal(d.allowed, c.allowed);
      assert.equal(rbac.check(c.req), c.allowed);
      assert.equal(d.userRule !== null, c.userSide, `user side: ${d.userRule}`);
      assert.equal(d.appRule !== null, c.appSide, `app side: ${d.appRule}`);
      assert.equal(reference(c.req), c.allowed);
    });
  }

  it('keeps users and apps apart: a user named like an app gets none of the app’s grants', async () => {
    const r = await Rbac.create(`${TAIL}g, share, user\n`);
    const req = { user: 'share', app: 'share', resource: 'obj://config/users/alice/apps/share/settings', action: 'read' };
    assert.equal(r.explain(req).appRule, 'p2, app, obj://config/users/*/apps/{app}/**, read');
    assert.equal(r.check(req), false);
  });
});

describe('device side: a kernel service is bounded by its device\'s role', () => {
  const core = kernelOn('ood1', 'core');
  const as = (who: Who, resource: string, action: string): AccessRequest => ({ ...who, resource, action });
  // What a compromised storage, portable or gateway device would want, and must not get: the zone's accounts and
  // their roles, the RBAC tail, the boot config, other devices' records, the kernel's secrets, service placement and
  // routes, user passwords through verify-hub, user files through dfs, kernel membership.
  const zoneConfiguration: [string, string][] = [
    ['obj://config/users/mallory/settings', 'create'],
    ['obj://config/users/alice/settings', 'write'],
    ['obj://config/users/alice/apps/share/spec', 'write'],
    ['obj://config/system/rbac/policy', 'write'],
    ['obj://config/boot/config', 'write'],
    ['obj://config/devices/ood1/doc', 'write'],
    ['obj://config/devices/ood1/info', 'write'],
    ['obj://config/devices/nas1/revoked', 'write'],
    ['obj://config/devices/mallory/doc', 'create'],
    ['obj://config/nodes/ood1/config', 'write'],
    ['obj://config/nodes/nas1/config', 'write'],
    ['obj://config/services/share/spec', 'write'],
    ['obj://config/services/verify-hub/info', 'write'],
    ['obj://config/services/verify-hub/instances/ood1', 'write'],
    ['obj://config/storage/volumes/home', 'write'],
    ['obj://config/zone/settings', 'write'],
    ['obj://config/system/verify-hub/credentials/alice', 'read'],
    ['obj://config/system/verify-hub/sessions/alice/s1', 'read'],
    ['obj://config/system/enrol/offers/x', 'read'],
    ['obj://user/alice/password', 'write'],
    ['obj://user/mallory', 'create'],
    ['obj://dfs/home/home/alice/diary.txt', 'read'],
    ['obj://system/tokens/service', 'create'],
    ['obj://log/audit/2024', 'delete'],
  ];
  // What node_daemon, the gateway and dfs do on such a device.
  const ownRecords: [string, string][] = [
    ['obj://config/boot/config', 'read'],
    ['obj://config/devices/ood1/doc', 'read'],
    ['obj://config/devices/nas1/doc', 'write'],
    ['obj://config/devices/nas1/info', 'write'],
    ['obj://config/nodes/nas1/config', 'read'],
    ['obj://config/nodes/nas1/config', 'create'],
    ['obj://config/services/gateway/instances/nas1', 'write'],
    ['obj://config/services/gateway/instances/nas1', 'delete'],
    ['obj://config/services/verify-hub/info', 'read'],
    ['obj://config/services/dfs/status/nas1', 'write'],
    ['obj://config/storage/volumes/home', 'read'],
    ['obj://config/system/control/config-store', 'read'],
  ];

  it('refuses a storage, portable or gateway device\'s kernel the zone\'s configuration, on the device side alone', () => {
    for (const who of [NAS, kernelOn('pn1', 'portable'), GW]) {
      for (const [resource, action] of zoneConfiguration) {
        const r = as(who, resource, action);
        const d = rbac.explain(r);
        assert.equal(d.allowed, false, JSON.stringify(r));
        assert.equal(d.deviceRule, null, JSON.stringify(r));
        assert.ok(d.userRule !== null && d.appRule !== null, `only the device side refuses ${JSON.stringify(r)}`);
        assert.equal(reference(r), false, JSON.stringify(r));
      }
    }
  });

  it('allows it its own records and what its services follow, under its own name only', () => {
    for (const [resource, action] of ownRecords) {
      assert.equal(rbac.check(as(NAS, resource, action)), true, `${action} ${resource}`);
      assert.equal(reference(as(NAS, resource, action)), true, `${action} ${resource}`);
      const elsewhere = resource.replace('/nas1/', '/nas2/').replace(/\/nas1$/, '/nas2');
      if (elsewhere !== resource && action !== 'read') assert.equal(rbac.check(as(NAS, elsewhere, action)), false, `${action} ${elsewhere}`);
    }
  });

  it('leaves a core device\'s kernel everything', () => {
    for (const [resource, action] of [...zoneConfiguration, ...ownRecords]) {
      const r = as(core, resource, action);
      assert.equal(rbac.check(r), true, JSON.stringify(r));
      assert.equal(rbac.explain(r).deviceRule, 'p3, core, obj://**, *');
      assert.equal(reference(r), true, JSON.stringify(r));
    }
  });

  it('fails closed for a device whose role cannot be read: not even its own records', () => {
    for (const device of [{ name: 'nas1', role: '' }, { name: '', role: '' }, { name: 'nas1', role: 'unheard-of' }]) {
      for (const [resource, action] of ownRecords) {
        const r = { user: 'node-daemon', app: 'node-daemon', device, resource, action };
        assert.equal(rbac.check(r), false, JSON.stringify(r));
        assert.equal(reference(r), false, JSON.stringify(r));
      }
    }
    const unknown: Principal = { userId: 'node-daemon', appId: 'node-daemon', kind: 'service', expiresAt: 0, device: 'did:dev:x' };
    assert.deepEqual(accessRequest(unknown, 'obj://config/nodes/nas1/config', 'read').device, { name: '', role: '' });
    assert.equal(rbac.check(accessRequest(unknown, 'obj://config/boot/config', 'read')), false);
    assert.equal(requesterText(unknown), 'node-daemon (app node-daemon) on a device whose role is unknown');
  });

  it('makes a kernel service\'s request bounded by its device, and leaves a user\'s token unbounded', () => {
    const svc: Principal = { userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0, device: 'did:dev:x', deviceName: 'nas1', deviceRole: 'storage' };
    assert.deepEqual(accessRequest(svc, 'obj://config/storage/volumes/home', 'read'), {
      user: 'dfs', app: 'dfs', device: { name: 'nas1', role: 'storage' }, resource: 'obj://config/storage/volumes/home', action: 'read',
    });
    assert.equal(requesterText(svc), 'dfs (app dfs) on storage device nas1');
    const carol: Principal = { userId: 'carol', appId: CLI, kind: 'sudo', expiresAt: 0 };
    assert.equal(accessRequest(carol, 'obj://config/services/share/spec', 'write').device, undefined);
    assert.equal(rbac.check(accessRequest(carol, 'obj://config/services/share/spec', 'write')), true);
    assert.equal(rbac.explain(accessRequest(carol, 'obj://config/services/share/spec', 'write')).deviceRule, undefined);
  });

  it('bounds whole subtrees too', () => {
    assert.equal(rbac.checkBelow(as(NAS, 'obj://config/storage', 'read')), true);
    assert.equal(rbac.checkBelow(as(NAS, 'obj://config/users', 'read')), false, 'only users/*/settings');
    assert.equal(rbac.checkBelow(as(core, 'obj://config/users', 'write')), true);
    assert.equal(rbac.checkSomeBelow(as(NAS, 'obj://config/users', 'read')), true);
    assert.equal(rbac.checkSomeBelow(as(NAS, 'obj://dfs/home', 'read')), false);
  });

  it('places every device role: core in full, every other one as edge', () => {
    const rules = parsePolicyCsv(DEFAULT_POLICY);
    const edge = rules.filter((r) => r.ptype === 'g3' && r.fields[1] === 'edge').map((r) => r.fields[0]);
    assert.deepEqual(['core', ...edge].sort(), [...DEVICE_ROLES].sort());
  });

  it('keeps device roles a namespace of their own, which the tail cannot touch', async () => {
    const r = await Rbac.create(TAIL);
    // A user or app named like a device role is just a name.
    r.setUserRole('core', 'user');
    assert.equal(r.check({ user: 'core', app: CLI, resource: 'obj://config/system/rbac/policy', action: 'write' }), false);
    for (const line of ['p3, storage, obj://**, *', 'g3, storage, core', 'g3, nas1, core']) {
      assert.throws(() => r.loadTail(`${line}\n`), /the tail cannot hold p3 lines|the tail cannot hold g3 lines/, line);
    }
    assert.equal(r.check(as(NAS, 'obj://config/users/alice/settings', 'write')), false);
  });
});

describe('resource patterns', () => {
  const alice = (resource: string, action = 'read') => ({ user: 'alice', app: CLI, resource, action });
  it('matches one whole segment with *, never across /', () => {
    assert.equal(rbac.check({ user: 'alice', app: 'share', resource: 'obj://config/users/alice/apps/share/spec', action: 'read' }), true);
    assert.equal(rbac.check({ user: 'alice', app: 'share', resource: 'obj://config/users/alice/x/apps/share/spec', action: 'read' }), false);
  });
  it('lets a final ** match zero or more segments', () => {
    assert.equal(rbac.check(alice('obj://dfs/main/home/alice')), true);
    assert.equal(rbac.check(alice('obj://dfs/main/home/alice/a/b/c/d/e')), true);
    assert.equal(rbac.check(alice('obj://dfs/main/home/alicex')), false);
  });
  it('denies non-canonical resources outright', () => {
    for (const resource of [
      'obj://dfs/main/home/alice/../bob',
      'obj://dfs/main/home/alice/./x',
      'obj://dfs/main/home/alice//x',
      'obj://dfs/main/home/alice/',
      'dfs://main/home/alice',
      '',
    ]) {
      assert.equal(rbac.check(alice(resource)), false, resource);
      assert.equal(rbac.check({ user: 'scheduler', app: 'scheduler', resource, action: 'read' }), false, resource);
    }
  });
  it('denies unknown actions', () => {
    assert.equal(rbac.check({ user: 'scheduler', app: 'scheduler', resource: 'obj://config/boot/config', action: 'constructor' }), false);
    assert.equal(rbac.check({ user: 'scheduler', app: 'scheduler', resource: 'obj://config/boot/config', action: '' }), false);
  });
  it('substitutes {user} with the exact requesting user only', () => {
    assert.equal(rbac.check({ user: 'alice', app: CLI, resource: 'obj://dfs/main/home/{user}/x', action: 'read' }), false);
  });
  it('accepts quoted fields, so a path may hold a comma', async () => {
    const r = await Rbac.create(`${TAIL}p, bob, "obj://dfs/main/home/alice/a, b/**", read\n`);
    assert.equal(r.check({ user: 'bob', app: CLI, resource: 'obj://dfs/main/home/alice/a, b/x', action: 'read' }), true);
    assert.match(r.policyText(), /^p, bob, "obj:\/\/dfs\/main\/home\/alice\/a, b\/\*\*", read$/m);
  });
});

// share may read Photos and everything in it; notes may read what is right inside Photos, and no deeper.
const subtrees = await Rbac.create(`${TAIL}p2, share, obj://dfs/main/home/alice/Photos/**, read
p2, notes, obj://dfs/main/home/alice/Photos/*, read
p2, notes, obj://dfs/main/home/alice/Docs/*/**, read
`);

describe('checkBelow: one grant per side covering a whole subtree', () => {
  const below = (user: string, app: string, resource: string, action = 'read') => subtrees.checkBelow({ user, app, resource, action });

  it('holds for a ** grant at or above the resource, on both sides', () => {
    assert.equal(below('alice', CLI, 'obj://dfs/main/home/alice'), true);
    assert.equal(below('alice', CLI, 'obj://dfs/main/home/alice/a/b', 'delete'), true);
    assert.equal(below('carol', CLI, 'obj://dfs/main', 'delete'), true);
    assert.equal(below('alice', 'share', 'obj://dfs/main/home/alice/Photos'), true);
    assert.equal(below('alice', 'share', 'obj://dfs/main/home/alice/Photos/2024'), true);
    // Docs/*/** covers every folder right inside Docs and all below, so all of Docs but Docs itself.
    assert.equal(below('alice', 'notes', 'obj://dfs/main/home/alice/Docs'), true);
  });

  it('does not hold where some name or depth below is left out, or one side lacks it', () => {
    assert.equal(below('alice', 'notes', 'obj://dfs/main/home/alice/Photos'), false, 'a trailing * stops at one depth');
    assert.equal(below('alice', 'notes', 'obj://dfs/main/home/alice/Photos/2024'), false);
    assert.equal(below('alice', CLI, 'obj://dfs/main/home'), false, '{user} below home takes one name only');
    assert.equal(below('alice', 'share', 'obj://dfs/main/home/alice'), false, 'the app side reaches Photos only');
    assert.equal(below('alice', 'share', 'obj://dfs/main/home/alice/Photos', 'delete'), false);
    assert.equal(below('dave', CLI, 'obj://dfs/main/home/dave', 'delete'), false, 'the user side: dave may only read');
    assert.equal(below('alice', CLI, 'obj://dfs/main/home/alice/../bob'), false);
    assert.equal(below('alice', CLI, 'obj://dfs/main/home/alice', 'constructor'), false);
  });

  it('never holds where check refuses something below', () => {
    const names = ['alice', 'bob', 'share', 'notes', 'Photos', 'Docs', 'apps', 'x'];
    const roots = ['obj://dfs', 'obj://dfs/main', 'obj://dfs/main/home', 'obj://dfs/main/public', 'obj://dfs/main/home/alice',
      'obj://dfs/main/home/alice/Photos', 'obj://dfs/main/home/alice/Docs', 'obj://dfs/main/home/alice/apps/share', 'obj://config/users/alice'];
    let held = 0;
    for (const root of roots) {
      for (const user of ['alice', 'bob', 'carol', 'dave', 'gina']) {
        for (const app of [CLI, 'share', 'notes']) {
          for (const action of ['read', 'write', 'create', 'delete']) {
            if (!subtrees.checkBelow({ user, app, resource: root, action })) continue;
            held++;
            for (const a of names) {
              for (const rest of ['', '/x', '/x/y', `/${a}/${a}/z`]) {
                const resource = `${root}/${a}${rest}`;
                assert.equal(subtrees.check({ user, app, resource, action }), true, `${user} ${app} ${action} ${resource}, below ${root}`);
              }
            }
          }
        }
      }
    }
    assert.ok(held > 20, `only ${held} subtrees held: the sample proves little`);
  });
});

describe('checkSomeBelow: a grant per side reaching something below', () => {
  const some = (user: string, app: string, resource: string, action = 'read') => subtrees.checkSomeBelow({ user, app, resource, action });

  it('holds on the way to what each side was granted', () => {
    for (const r of ['obj://dfs', 'obj://dfs/main', 'obj://dfs/main/home', 'obj://dfs/main/home/alice', 'obj://dfs/main/home/alice/Photos']) {
      assert.equal(some('alice', CLI, r), true, r);
    }
    assert.equal(some('gina', CLI, 'obj://dfs/main'), true, 'a guest sees the root, on the way to /public');
    assert.equal(some('gina', CLI, 'obj://dfs/main/public'), true);
    assert.equal(some('alice', 'share', 'obj://dfs/main/home/alice'), true);
    assert.equal(some('alice', 'notes', 'obj://dfs/main/home/alice/Docs'), true);
  });

  it('does not hold off the way, for an action no side has, or where one side reaches nothing', () => {
    assert.equal(some('alice', CLI, 'obj://dfs/main/home/bob'), false, 'another user\'s home');
    assert.equal(some('gina', CLI, 'obj://dfs/main/home'), false, 'a guest has nothing under /home');
    assert.equal(some('alice', 'share', 'obj://dfs/main/home/alice/Docs'), false, 'the app reaches Photos only');
    assert.equal(some('alice', 'notes', 'obj://dfs/main/home/alice/Photos'), true, 'Photos/* is below Photos');
    assert.equal(some('alice', 'notes', 'obj://dfs/main/home/alice/Photos/2024'), false, 'and stops there');
    assert.equal(some('gina', CLI, 'obj://dfs/main', 'write'), false);
    assert.equal(some('alice', CLI, 'obj://dfs/main/home/../home/alice'), false, 'not canonical');
  });

  it('holds wherever check allows something below, in a sample of resources', () => {
    const users = ['alice', 'bob', 'carol', 'dave', 'gina'];
    const below = ['home/alice/Photos/2024/x', 'home/alice/Docs/a/b', 'home/bob/x', 'public/p', 'home/alice/apps/share/y'];
    for (const user of users) {
      for (const app of [CLI, 'share', 'notes']) {
        for (const path of below) {
          if (!subtrees.check({ user, app, resource: `obj://dfs/main/${path}`, action: 'read' })) continue;
          const segs = path.split('/');
          for (let i = 0; i < segs.length; i++) {
            const above = ['obj://dfs/main', ...segs.slice(0, i)].join('/');
            assert.equal(some(user, app, above), true, `${user} ${app} reads ${path}, so sees ${above}`);
          }
        }
      }
    }
  });
});

describe('removeUser', () => {
  const tail = `${TAIL}g, erin, admin
g, erin, family
p, family, obj://dfs/main/family/**, read|write
p, erin, obj://dfs/main/projects/**, read|write
p, bob, obj://dfs/main/home/erin/shared/**, read
p2, share, obj://dfs/*/home/erin/photos/**, read
`;
  const erin = (resource: string, action = 'read') => ({ user: 'erin', app: CLI, resource, action });

  it('takes every grant away at once, before it returns', async () => {
    const r = await Rbac.create(tail);
    assert.equal(r.check(erin('obj://config/users/alice/apps/share/spec', 'write')), true);
    assert.equal(r.check(erin('obj://dfs/main/projects/x', 'write')), true);
    assert.equal(r.check(erin('obj://dfs/main/family/x')), true);
    r.removeUser('erin');
    assert.equal(r.check(erin('obj://config/users/alice/apps/share/spec', 'write')), false);
    assert.equal(r.check(erin('obj://dfs/main/projects/x', 'write')), false);
    assert.equal(r.check(erin('obj://dfs/main/family/x')), false);
    assert.equal(r.check(erin('obj://config/boot/config')), false);
    assert.doesNotMatch(r.policyText(), /erin/);
  });

  it('also drops grants to others on the user’s own resources, so a later namesake inherits nothing', async () => {
    const r = await Rbac.create(tail);
    const bobReads = { user: 'bob', app: CLI, resource: 'obj://dfs/main/home/erin/shared/a', action: 'read' };
    assert.equal(r.check(bobReads), true);
    r.removeUser('erin');
    assert.equal(r.check(bobReads), false);
    r.setUserRole('erin', 'user');
    assert.equal(r.check(bobReads), false, 'the stored tail still holds the line; it stays dropped until the tail is regenerated');
  });

  it('leaves everyone else alone', async () => {
    const r = await Rbac.create(tail);
    r.removeUser('erin');
    assert.equal(r.check({ user: 'carol', app: CLI, resource: 'obj://config/users/alice/apps/share/spec', action: 'write' }), true);
    assert.equal(r.check({ user: 'alice', app: CLI, resource: 'obj://dfs/main/home/alice/x', action: 'write' }), true);
    assert.match(r.policyText(), /^p, family, obj:\/\/dfs\/main\/family\/\*\*, read\|write$/m);
  });

  it('stays in force when a stale tail arrives, until setUserRole names the user again', async () => {
    const r = await Rbac.create(tail);
    r.removeUser('erin');
    r.loadTail(tail);
    assert.equal(r.check(erin('obj://dfs/main/projects/x')), false);
    r.setUserRole('erin', 'guest');
    assert.equal(r.check(erin('obj://config/boot/config')), true);
    assert.equal(r.check(erin('obj://config/users/alice/settings', 'write')), false, 'the new role replaces the tail’s');
  });

  it('never throws and never touches base-policy names', async () => {
    const r = await Rbac.create(tail);
    r.removeUser('admin');
    r.removeUser('scheduler');
    r.removeUser('not a name');
    assert.equal(r.check({ user: 'carol', app: CLI, resource: 'obj://config/users/alice/apps/share/spec', action: 'write' }), true);
    assert.equal(r.check({ user: 'scheduler', app: 'scheduler', resource: 'obj://config/nodes/ood1/config', action: 'write' }), true);
  });
});

describe('setUserRole', () => {
  it('gives exactly one user role, replacing the previous one and the tail’s', async () => {
    const r = await Rbac.create(TAIL);
    const write = { user: 'alice', app: CLI, resource: 'obj://config/users/bob/apps/share/spec', action: 'write' };
    assert.equal(r.check(write), false);
    r.setUserRole('alice', 'admin');
    assert.equal(r.check(write), true);
    r.setUserRole('alice', 'limited');
    assert.equal(r.check(write), false);
    assert.equal(r.check({ ...write, resource: 'obj://dfs/main/home/alice/x' }), false);
    assert.equal(r.check({ ...write, resource: 'obj://dfs/main/home/alice/x', action: 'read' }), true);
    assert.equal(r.policyText().match(/^g, alice, /gm)?.length, 1);
  });

  it('survives a reload of the tail', async () => {
    const r = await Rbac.create(TAIL);
    r.setUserRole('erin', 'user');
    r.loadTail(TAIL);
    assert.equal(r.check({ user: 'erin', app: CLI, resource: 'obj://dfs/main/home/erin/x', action: 'write' }), true);
  });

  it('refuses unknown roles and base-policy names, changing nothing', async () => {
    const r = await Rbac.create(TAIL);
    const before = r.policyText();
    assert.throws(() => r.setUserRole('alice', 'kernel'), /"kernel" is not a user role/);
    assert.throws(() => r.setUserRole('alice', 'root'), /"root" is not a user role/);
    assert.throws(() => r.setUserRole('scheduler', 'user'), /name of the base policy/);
    assert.throws(() => r.setUserRole('app', 'user'), /name of the base policy/);
    assert.throws(() => r.setUserRole('a/b', 'user'), /not a valid user id/);
    assert.equal(r.policyText(), before);
  });
});

describe('loadTail', () => {
  it('replaces the generated tail', async () => {
    const r = await Rbac.create(`${TAIL}g, erin, admin\np2, share, obj://dfs/*/home/*/photos/**, read\n`);
    const erinWrites = { user: 'erin', app: CLI, resource: 'obj://config/users/alice/apps/share/spec', action: 'write' };
    const sharePhotos = { user: 'alice', app: 'share', resource: 'obj://dfs/main/home/alice/photos/a.jpg', action: 'read' };
    const notesPhotos = { ...sharePhotos, app: 'notes' };
    assert.equal(r.check(erinWrites), true);
    assert.equal(r.check(sharePhotos), true);
    r.loadTail(`${TAIL}p2, notes, obj://dfs/*/home/*/photos/**, read\n`);
    assert.equal(r.check(erinWrites), false);
    assert.equal(r.check(sharePhotos), false);
    assert.equal(r.check(notesPhotos), true);
    assert.doesNotMatch(r.policyText(), /erin/);
  });

  it('is atomic: a bad tail changes nothing', async () => {
    const r = await Rbac.create(TAIL);
    const before = r.policyText();
    assert.throws(() => r.loadTail('g, erin, admin\ng, mallory, kernel\n'), /^Error: tail line 2:/);
    assert.equal(r.policyText(), before);
    assert.equal(r.check({ user: 'erin', app: CLI, resource: 'obj://config/boot/config', action: 'read' }), false);
  });

  it('cannot change what the base policy says', async () => {
    const r = await Rbac.create(TAIL);
    const refused: [string, RegExp][] = [
      ['g, mallory, kernel', /cannot assign the base role "kernel"/],
      ['g, mallory, frame', /cannot assign the base role "frame"/],
      ['g2, evil, trusted-ui', /cannot assign the base role "trusted-ui"/],
      ['g2, evil, kernel', /cannot assign the base role "kernel"/],
      ['g2, evil, user', /cannot assign the base role "user" with g2/],
      ['g, control-panel, admin', /"control-panel" is defined by the base policy/],
      ['g, guest, admin', /"guest" is defined by the base policy/],
      ['p, user, obj://**, *', /"user" is defined by the base policy/],
      ['p2, app, obj://dfs/**, read', /"app" is defined by the base policy/],
    ];
    for (const [line, why] of refused) {
      assert.throws(() => r.loadTail(`# generated\n\n${line}\n`), (e: Error) => e.message.startsWith('tail line 3: ') && why.test(e.message), line);
    }
    r.loadTail('g, erin, family\np, family, obj://dfs/main/family/**, read\ng, family, user\n');
    assert.equal(r.check({ user: 'erin', app: CLI, resource: 'obj://dfs/main/home/erin/x', action: 'write' }), true);
  });
});

describe('policy text', () => {
  it('rejects a malformed line, naming its line number and the reason', () => {
    const bad: [string, RegExp][] = [
      ['q, alice, obj://dfs/**, read', /unknown rule type "q"/],
      ['p, alice, obj://dfs/**', /"p" takes 3 fields \(subject, resource, actions\), got 2/],
      ['g, alice', /"g" takes 2 fields \(member, role\), got 1/],
      ['g, alice, user, extra', /"g" takes 2 fields/],
      ['p, al ice, obj://dfs/**, read', /"al ice" is not a valid subject name/],
      ['g, alice, ', /"" is not a valid subject name/],
      ['g, alice, alice', /"alice" cannot be its own role/],
      ['p, alice, dfs://main/**, read', /must start with obj:\/\//],
      ['p, alice, obj://dfs/**/x, read', /\*\* may only be the last segment/],
      ['p, alice, obj://dfs/main/*.jpg, read', /must be a whole segment/],
      ['p, alice, obj://dfs/main/{user}x, read', /must be a whole segment/],
      ['p, alice, obj://cofig/boot/config, read', /unknown resource kind "cofig"/],
      ['p, alice, obj://dfs/main/../x, read', /".." segment/],
      ['p, alice, obj://dfs//x, read', /empty path segment/],
      ['p, alice, obj://{user}/x, read', /resource kind cannot be a placeholder/],
      ['p, alice, obj://dfs/**, read|fly', /unknown action "fly"/],
      ['p, alice, obj://dfs/**, ', /unknown action ""/],
      ['p, alice, "obj://dfs/**, read', /unterminated quote/],
      ['p, alice, "obj://dfs/**" x, read', /text after a closing quote/],
    ];
    for (const [line, why] of bad) {
      const text = `# comment\n\n${line}\np, alice, obj://dfs/**, read\n`;
      assert.throws(
        () => parsePolicyCsv(text),
        (e: Error) => e.message.startsWith('policy line 3: ') && why.test(e.message) && e.message.endsWith(line.trim()),
        line,
      );
    }
  });

  it('names the tail’s line when Rbac.create gets a bad tail', async () => {
    await assert.rejects(Rbac.create('g, alice, user\n\np, bob, obj://dfs/main/x, fly\n'), /^Error: tail line 3: unknown action "fly"/);
  });

  it('round-trips: policyText parses back to the rules in force', async () => {
    const r = await Rbac.create(TAIL);
    r.setUserRole('erin', 'user');
    const rules = parsePolicyCsv(r.policyText()).map(ruleText);
    assert.ok(rules.includes('g, erin, user'));
    assert.ok(rules.includes('g2, share, app'));
    assert.equal(rules.length, parsePolicyCsv(DEFAULT_POLICY).length + parsePolicyCsv(TAIL).length + 1);
  });
});
