// `buckyos device add|list|rm` (admin, on a zone device) and `buckyos join <code>` (on the new device): adding a
// device takes an offer from the zone to the device by hand, so no secret ever crosses the network in the clear.
import type { Command } from 'commander';
import { activationApi } from '../lib/api/activation.ts';
import { verifyHubApi } from '../lib/api/verify-hub.ts';
import { DEVICE_ROLES, type DeviceRole } from '../lib/identity/documents.ts';
import { createClient } from '../lib/krpc/index.ts';
import { CliContext, table } from './context.ts';

function role(value: string): DeviceRole {
  if (!(DEVICE_ROLES as readonly string[]).includes(value)) throw new Error(`--role must be one of ${DEVICE_ROLES.join(', ')}, not "${value}"`);
  return value as DeviceRole;
}

export function registerDevice(program: Command): void {
  const device = program.command('device').description('add, list and remove the zone\'s devices (admin)');
  const hub = (cmd: Command) => new CliContext(cmd.optsWithGlobals()).client(verifyHubApi);

  device
    .command('add')
    .description('issue a one-time join code for a new device; run `buckyos join <code>` on that device')
    .requiredOption('--role <role>', `the new device's role: ${DEVICE_ROLES.join(', ')}`, role)
    .option('--name <name>', 'fix the new device\'s name (default: the device proposes one)')
    .option('--ttl <seconds>', 'how long the code stays valid', (v) => Number.parseInt(v, 10), 900)
    .option('--json', 'JSON output')
    .action(async (opts: { role: DeviceRole; name?: string; ttl: number; json?: boolean }, cmd: Command) => {
      const o = await hub(cmd).device_offer({ role: opts.role, ttl_sec: opts.ttl, ...(opts.name ? { name: opts.name } : {}) });
      if (opts.json) return console.log(JSON.stringify(o, null, 2));
      console.log(`Join code for a ${o.role} device${o.name ? ` named ${o.name}` : ''}, valid until ${new Date(o.expires_at * 1000).toISOString()} (use it once):\n`);
      console.log(`  ${o.code}\n`);
      console.log('On the new device run:  buckyos join <code>   (or open its activation page and paste the code)');
      console.log(`QR payload: ${o.qr_payload}`);
    });
  device
    .command('list')
    .description('list the zone\'s devices')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { devices } = await hub(cmd).device_list({});
      if (opts.json) return console.log(JSON.stringify(devices, null, 2));
      console.log(table(['NAME', 'ROLE', 'STATE', 'ADDRESSES', 'LAST SEEN', ''], devices.map((d) => [
        d.name, d.role, d.state, d.addresses.join(' '), d.last_seen ? new Date(d.last_seen * 1000).toISOString() : '-', d.current ? '(this device)' : '',
      ])));
    });
  device
    .command('rm <name>')
    .description('remove a device: its key is revoked and its tokens and tunnels stop working at once')
    .option('--force', 'remove a core device, whose copy of the zone\'s signing keys cannot be taken away (only for a lost or destroyed device)')
    .option('--ignore-quorum', 'remove it even if the zone\'s etcd cluster would lose its quorum (writes stop until members return)')
    .action(async (name: string, opts: { force?: boolean; ignoreQuorum?: boolean }, cmd: Command) => {
      const r = await hub(cmd).device_remove({ name, force: opts.force ?? false, ignore_quorum: opts.ignoreQuorum ?? false });
      console.log(`device ${r.name} removed (${r.did} revoked, ${r.deleted_keys} keys removed)`);
    });
}

export function registerJoin(program: Command): void {
  program
    .command('join <code>')
    .description('join this (unactivated) device to a zone with a code from `buckyos device add`')
    .option('--device-name <name>', 'name for this device, when the code does not fix one (default: from the host name)')
    .option('--device <url>', 'the device\'s activation address (default: this node\'s activation port)')
    .action(async (code: string, opts: { deviceName?: string; device?: string }, cmd: Command) => {
      const url = opts.device ?? `http://127.0.0.1:${new CliContext(cmd.optsWithGlobals()).config.ports.activation}`;
      const activation = createClient(activationApi, { baseUrl: url, timeoutMs: 60_000 });
      const r = await activation.join({ offer: code, ...(opts.deviceName ? { device_name: opts.deviceName } : {}) });
      console.log(`joined: device ${r.device_name} (${r.device_did}) is now a ${r.role} device of zone ${r.zone}`);
    });
}
