// The base policy every zone starts from. It is code, not configuration: the scheduler's generated tail (users, apps
// and their grants) is appended to it but may not change what any subject named here can do (see enforcer.ts), so
// the guarantees written in the comments below hold in every zone. docs/rbac.md explains the model.

/** User-side roles a user can be given (by `Rbac.setUserRole` or a `g` line in the tail). Each inherits the next. */
export const USER_ROLES = ['admin', 'user', 'limited', 'guest'] as const;

/** App-side roles the tail may give an app (`g2` lines). */
export const APP_ROLES = ['app'] as const;

export const DEFAULT_POLICY = `# BuckyOS base RBAC policy. Lines: p/g are the user side, p2/g2 the app side; a request needs both. p3/g3 are the
# device side, which also bounds every request made with a kernel service token.
# p, <subject or role>, <resource pattern>, <actions>      g, <member>, <role>

# =====================================================================================================================
# User side
# =====================================================================================================================

# kernel: the kernel ring (DESIGN §2) is the system itself and owns the disks, so there is nothing it could be kept
# from that it could not reach anyway; limiting it would only break repair. But a kernel service runs on one device,
# which signs its token, and the device side below bounds it by that device's role: all of this on a core device,
# only what it needs on any other. Kernel services call as themselves: the service id is both the user and the app of
# the request. The ids are those node_daemon mints service tokens for
# (KERNEL_SERVICES in lib/identity/tokens.ts), except klog, which needs no more than frame.
p, kernel, obj://**, *
g, system-config, kernel
g, verify-hub, kernel
g, node-daemon, kernel
g, scheduler, kernel
g, gateway, kernel
g, activation, kernel
g, dfs, kernel

# frame: services that serve users without being the system. They read the zone's configuration to do their job, but
# not system/, which holds kernel secrets (verify-hub's credentials and sessions). They keep their own state under services/<self>/; a bug there harms only
# themselves. They may append to logs but not rewrite or delete a record, so a compromised frame service cannot
# erase its own tracks.
p, frame, obj://config/boot/config, read
p, frame, obj://config/devices/**, read
p, frame, obj://config/nodes/**, read
p, frame, obj://config/services/**, read
p, frame, obj://config/users/**, read
p, frame, obj://config/storage/**, read
p, frame, obj://config/services/{user}/**, write|create|delete
p, frame, obj://log/**, create
g, control-panel, frame
g, klog, frame
g, ns, frame

# guest: someone let in to see what is shared publicly, nothing more. The boot config is public anyway (the zone
# publishes it through DNS), and the UI needs it to know which zone it is in; the zone's settings (its display name and
# time zone) are how the UI names the zone and shows its times.
p, guest, obj://config/boot/config, read
p, guest, obj://config/zone/settings, read
p, guest, obj://dfs/*/public/**, read

# limited: a read-only account (a child, a visitor, a kiosk). It sees the zone's status, its own account and its
# own home, and may use apps, which then act read-only too because the user side also bounds them. The writes are
# its own password (verify-hub checks obj://user/<self>/password and then stores the hash as a kernel service) and
# ending its own other sessions (obj://user/<self>/sessions), a safety action every account needs.
g, limited, guest
p, limited, obj://config/devices/*/info, read
p, limited, obj://config/services/*/info, read
p, limited, obj://config/users/{user}/**, read
p, limited, obj://dfs/*/home/{user}/**, read
p, limited, obj://user/{user}/**, read
p, limited, obj://user/{user}/password, write
p, limited, obj://user/{user}/sessions, write
p, limited, obj://app/**, read|exec

# user: a full member of the zone. Owns their home folder, shares the public folder, and configures their own apps.
# Not their account record (users/<self>/settings holds their role) and not their app specs (a spec's permissions
# become app grants): those are admin's, so a user cannot raise their own role or an app's reach.
g, user, limited
p, user, obj://config/users/{user}/apps/*/settings/**, write|create|delete
p, user, obj://dfs/*/home/{user}/**, write|create|delete
p, user, obj://dfs/*/public/**, write|create|delete

# admin: the owner, and whoever the owner trusts with the zone. Admin writes the zone's desired state (device
# documents, users and their app specs, service specs, storage) and operates it (exec on obj://system). Only the
# kernel, even against admin:
#  - writes what the kernel derives or observes: boot/config (written at activation from the owner-signed document),
#    devices/*/info, nodes/*/config, services/*/info and instances, and system/. That includes system/rbac/: the
#    scheduler regenerates it from users/, so the policy can never disagree with the user records;
#  - writes users/*/settings, the account records whose role and state RBAC follows: an admin changes them through
#    verify-hub, which asks for sudo, protects the owner and audits the change; a plain config write would do none;
#  - reads system/ other than system/rbac/ (signing keys and other kernel secrets);
#  - creates, writes or deletes under obj://system (minting service tokens, changing kernel membership): with that
#    an admin session, or a stolen admin cookie, could make itself kernel;
#  - changes or deletes logs: the audit trail must outlive whoever it records.
g, admin, user
p, admin, obj://config/devices/**, read
p, admin, obj://config/devices/*/doc, write|create|delete
p, admin, obj://config/nodes/**, read
p, admin, obj://config/services/**, read
p, admin, obj://config/services/*/spec, write|create|delete
p, admin, obj://config/services/*/config, write|create|delete
p, admin, obj://config/users/**, read
p, admin, obj://config/users/*/apps/**, write|create|delete
p, admin, obj://config/storage/**, read|write|create|delete
p, admin, obj://config/zone/settings, write|create
p, admin, obj://config/system/rbac/**, read
p, admin, obj://dfs/**, read|write|create|delete
p, admin, obj://app/**, *
p, admin, obj://user/**, read|write|create|delete
p, admin, obj://system/**, read|exec
p, admin, obj://log/**, read

# =====================================================================================================================
# App side
# =====================================================================================================================

# kernel: a kernel service calling as itself (see the user side).
p2, kernel, obj://**, *
g2, system-config, kernel
g2, verify-hub, kernel
g2, node-daemon, kernel
g2, scheduler, kernel
g2, gateway, kernel
g2, activation, kernel
g2, dfs, kernel

# frame: the same reach as on the user side. A frame service that serves a user's request is bounded by this scope
# AND by that user's rights, so it can never do more for a user than it could do for itself.
p2, frame, obj://config/boot/config, read
p2, frame, obj://config/devices/**, read
p2, frame, obj://config/nodes/**, read
p2, frame, obj://config/services/**, read
p2, frame, obj://config/users/**, read
p2, frame, obj://config/storage/**, read
p2, frame, obj://config/services/{app}/**, write|create|delete
p2, frame, obj://log/**, create
g2, klog, frame
g2, ns, frame

# trusted-ui: the system UI and the CLI are how a user acts on the zone at all, so they may do whatever that user
# may: the user side alone decides. They ship with the kernel; no installed app can join this role (see the tail
# rules in enforcer.ts). The control panel is also a frame service; when it calls as itself the user side bounds it
# to frame.
p2, trusted-ui, obj://**, *
g2, control-panel, trusted-ui
g2, buckyos-cli, trusted-ui

# app: an ordinary user-mode app (DESIGN §2, user ring). It reads its own spec but cannot write it (that would widen
# its own permissions), keeps its settings, and keeps its data in its own folder inside the home of the user it runs
# for. The boot config is public and lets it build its own URLs. The scheduler puts every installed app in this role
# (g2, <app>, app) and adds the grants its manifest asks for, as p2 lines in the tail.
p2, app, obj://config/boot/config, read
p2, app, obj://config/users/*/apps/{app}/**, read
p2, app, obj://config/users/*/apps/{app}/settings/**, write|create|delete
p2, app, obj://dfs/*/home/*/apps/{app}/**, read|write|create|delete

# =====================================================================================================================
# Device side
# =====================================================================================================================
# A kernel service token is signed by the key of the device the service runs on, and whatever the service, the role
# in that device's signed document (core, storage, portable, gateway) bounds what the call may do: p3 lines are keyed
# by device role, {device} is the signing device's name. A user's token carries no device and is not bound here. A
# device whose role cannot be read matches no line: its kernel gets nothing rather than everything. Device roles are
# a namespace of their own: a user or an app named like one gets nothing from it, and the tail cannot touch this side.

# core: the control plane runs here (system-config, verify-hub, the scheduler) and the device holds the zone's
# verify-hub and enrolment keys; there is nothing to protect from it.
p3, core, obj://**, *

# edge: storage, portable and gateway devices. They run the gateway, dfs where they have storage, and what an admin
# places on them; none of them is the control plane. A compromised one must not be able to write the zone's
# configuration (users and their roles, the RBAC tail, the boot config, service specs and routes, other devices'
# records) nor read the kernel's secrets under system/, so that removing it ends what it could do. It gets:
g3, storage, edge
g3, portable, edge
g3, gateway, edge
# what every device follows: the boot config, the zone's devices (the tunnel's peers, other devices' tokens), the
# routes (services/*/info) and where the zone's store is (system/control/, for a store moved while it was away);
p3, edge, obj://config/boot/config, read
p3, edge, obj://config/devices/**, read
p3, edge, obj://config/services/*/info, read
p3, edge, obj://config/system/control/**, read
# its own records, under its own name only: its document (node_daemon publishes the copy it holds), its report, its
# run config (created at its first boot if absent; the scheduler's to write from then on) and the heartbeats of the
# instances it runs;
p3, edge, obj://config/devices/{device}/doc, write
p3, edge, obj://config/devices/{device}/info, write
p3, edge, obj://config/nodes/{device}/config, read|create
p3, edge, obj://config/services/*/instances/{device}, write|delete
# for dfs: the storage records (disks and volumes are an admin's to write), every node's dfs status and its own to
# report, and the inputs of the RBAC it checks file access by (each user's record and the tail);
p3, edge, obj://config/storage/**, read
p3, edge, obj://config/services/dfs/status/*, read
p3, edge, obj://config/services/dfs/status/{device}, write
p3, edge, obj://config/users/*/settings, read
p3, edge, obj://config/system/rbac/policy, read
# for ns on a gateway device: its configuration, the records admins set through it, and the installed apps whose
# names it answers for.
p3, gateway, obj://config/services/ns/config, read
p3, gateway, obj://config/services/ns/records, read|write
p3, gateway, obj://config/users/*/apps/*/spec, read
`;
