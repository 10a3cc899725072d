// `buckyos dns ...`: the zone's DNS server (cyfs-ns as a kernel service, docs/ns.md "In a zone"): turn it on and
// off, set its configuration (validated here with every problem's line before it is stored), see its statistics,
// manage the records admins add, ask it a question, map a fake-ip address back, list DHCP leases, and print the signed
// TXT records that let other zones' cyfs-ns verify this zone's names.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { NS_CONFIG_KEY, NS_RECORD_TYPES, type NsRecord, nsApi } from '../lib/api/ns.ts';
import { systemConfigApi } from '../lib/api/system-config.ts';
import { DOCUMENT_LIFETIME_SEC, signDocument, zoneNamesSchema } from '../lib/identity/documents.ts';
import { loadKeyFile } from '../lib/identity/keys.ts';
import { IDENTITY_FILES, loadNodeIdentity } from '../lib/identity/node-identity.ts';
import { BOOT_PREFIX, ConfigError, NAMES_PREFIX, ZONE_RECORDS_LABEL, parseNsConfig, txtStrings } from '../net/ns/main.ts';
import { CliContext } from './context.ts';

type Opts = { json?: boolean };

function print(json: boolean | undefined, value: unknown, human: () => void): void {
  if (json) console.log(JSON.stringify(value, null, 2));
  else human();
}

/** A zone-file TXT record with the value split into 255-byte strings. */
function txtLine(owner: string, ttl: number, value: string): string {
  return `${owner}. ${ttl} IN TXT ${txtStrings(value).map((b) => JSON.stringify(b.toString('utf8'))).join(' ')}`;
}

export function registerDns(program: Command): void {
  const dns = program.command('dns').description("the zone's DNS server (cyfs-ns): configuration, records, statistics, lookups");
  const ctx = (cmd: Command) => new CliContext(cmd.optsWithGlobals());

  dns
    .command('enable')
    .description('run the DNS server on the zone devices with these roles (services/ns/spec)')
    .option('--roles <roles>', 'comma-separated device roles', 'core,gateway')
    .option('--replicas <n>', 'how many instances, or "all"', 'all')
    .action(async (o: { roles: string; replicas: string }, cmd: Command) => {
      const replicas = o.replicas === 'all' ? 'all' : Number(o.replicas);
      if (replicas !== 'all' && (!Number.isInteger(replicas) || replicas < 1 || replicas > 64)) throw new Error('--replicas: "all" or a number from 1 to 64');
      const spec = { replicas, roles: o.roles.split(',').map((r) => r.trim()).filter(Boolean) };
      await ctx(cmd).client(systemConfigApi).set({ key: 'services/ns/spec', value: JSON.stringify(spec) });
      console.log(`DNS server placed: ${JSON.stringify(spec)} (the scheduler starts it within seconds; see \`buckyos dns status\`)`);
    });
  dns
    .command('disable')
    .description('stop the DNS server everywhere')
    .action(async (_o: unknown, cmd: Command) => {
      await ctx(cmd).client(systemConfigApi).set({ key: 'services/ns/spec', value: JSON.stringify({ replicas: 0, roles: ['core'] }) });
      console.log('DNS server stopped everywhere');
    });

  const config = dns.command('config').description(`the DNS configuration (${NS_CONFIG_KEY}; the YAML of \`buckyos ns --config\`)`);
  config
    .command('get')
    .description('print the stored configuration')
    .action(async (_o: unknown, cmd: Command) => {
      const r = await ctx(cmd).client(systemConfigApi).get({ key: NS_CONFIG_KEY });
      if (r.value === null) console.log('# no configuration set: the DNS server runs on its defaults (port 53, this device\'s nameservers upstream)');
      else process.stdout.write(r.value.endsWith('\n') ? r.value : `${r.value}\n`);
    });
  config
    .command('set <file>')
    .description('validate a YAML file and store it; every running instance switches to it')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const c = ctx(cmd);
      const text = readFileSync(file, 'utf8');
      try {
        const cfg = parseNsConfig(text, file, join(c.paths.etc, 'ns'));
        if (cfg.workers > 1) throw new ConfigError(file, [`${file}: workers: a zone's DNS server answers its own names in one process; use workers: 1`]);
      } catch (err) {
        if (err instanceof ConfigError) {
          console.error(err.message);
          process.exit(2);
        }
        throw err;
      }
      const r = await c.client(systemConfigApi).set({ key: NS_CONFIG_KEY, value: text });
      console.log(`stored at revision ${r.revision}; relative paths in it are read from ${join(c.paths.etc, 'ns')} on each device`);
    });

  dns
    .command('status')
    .description('configuration in use, listeners and statistics')
    .option('--json', 'machine-readable output')
    .action(async (o: Opts, cmd: Command) => {
      const s = await ctx(cmd).client(nsApi).status({});
      print(o.json, s, () => {
        console.log(`configuration: ${s.config.source}${s.config.source === 'system-config' ? ` (revision ${s.config.revision})` : ''}`);
        if (s.config.error) console.log(`refused or failed: ${s.config.error}`);
        console.log(`listening: ${s.listening.join(', ') || 'nothing'}   zone names: ${s.zone_names}   API records: ${s.api_records}`);
        const st = s.stats;
        if (!st) return;
        console.log(`queries: ${st.queries}   cache hit ratio: ${st.cache.hit_ratio}   latency p50/p99: ${st.latency.p50_ms}/${st.latency.p99_ms} ms`);
        console.log(`by source: ${Object.entries(st.by_source).map(([k, v]) => `${k} ${v}`).join(', ')}`);
        for (const n of st.top_names.slice(0, 10)) console.log(`  top    ${String(n.count).padStart(8)}  ${n.name}`);
        for (const n of st.top_blocked.slice(0, 10)) console.log(`  blocked ${String(n.count).padStart(7)}  ${n.name}`);
        for (const u of st.upstreams) console.log(`  upstream ${u.group}/${u.label}: ${u.queries} queries, ${u.failures} failures, ${u.down ? 'DOWN' : 'up'}, ${u.rtt_ms} ms`);
        for (const t of st.trusted) console.log(`  trusted ${t.label}: ${t.queries} queries, ${t.failures} not verified${t.last_error ? ` (last: ${t.last_error})` : ''}`);
      });
    });
  dns
    .command('flush')
    .description('empty the caches and re-read hosts files and block lists')
    .action(async (_o: unknown, cmd: Command) => {
      await ctx(cmd).client(nsApi).flush({});
      console.log('flushed');
    });
  dns
    .command('query <name> [type]')
    .description('ask the zone DNS server a question, as a client would')
    .option('--json', 'machine-readable output')
    .action(async (name: string, type: string | undefined, o: Opts, cmd: Command) => {
      const r = await ctx(cmd).client(nsApi).lookup({ name, type: type ?? 'A' });
      print(o.json, r, () => {
        console.log(r.rcode);
        for (const a of r.answers) console.log(a);
      });
    });

  const records = dns.command('records').description('records added through the API (beside those in the configuration)');
  records
    .command('ls')
    .option('--json', 'machine-readable output')
    .action(async (o: Opts, cmd: Command) => {
      const r = await ctx(cmd).client(nsApi).records_list({});
      print(o.json, r, () => {
        if (r.records.length === 0) console.log('no records');
        for (const x of r.records) console.log(`${x.name} ${x.ttl ?? '-'} ${x.type} ${x.value}`);
      });
    });
  records
    .command('add <name> <type> <value>')
    .description(`add a record (${NS_RECORD_TYPES.join(', ')})`)
    .option('--ttl <seconds>', 'TTL (default 300)')
    .action(async (name: string, type: string, value: string, o: { ttl?: string }, cmd: Command) => {
      const record = { name, type: type.toUpperCase(), value, ...(o.ttl === undefined ? {} : { ttl: Number(o.ttl) }) } as NsRecord;
      const r = await ctx(cmd).client(nsApi).records_put({ record });
      console.log(`added; ${r.records} API records`);
    });
  records
    .command('rm <name> <type> [value]')
    .description('remove the API records of a name and type (only the one with value, when given)')
    .action(async (name: string, type: string, value: string | undefined, _o: unknown, cmd: Command) => {
      const r = await ctx(cmd).client(nsApi).records_delete({ name, type: type.toUpperCase() as NsRecord['type'], value });
      console.log(`removed ${r.deleted}`);
    });

  dns
    .command('fakeip <ip>')
    .description('which name a fake-ip address stands for')
    .action(async (ip: string, _o: unknown, cmd: Command) => {
      const r = await ctx(cmd).client(nsApi).fakeip_lookup({ ip });
      console.log(`${ip} ${r.name} (assigned ${new Date(r.assigned_at).toISOString()}, last used ${new Date(r.last_used).toISOString()})`);
    });
  dns
    .command('leases')
    .description('DHCP leases')
    .option('--json', 'machine-readable output')
    .action(async (o: Opts, cmd: Command) => {
      const r = await ctx(cmd).client(nsApi).leases({});
      print(o.json, r, () => {
        if (r.leases.length === 0) console.log('no leases');
        for (const l of r.leases) {
          const until = l.static ? 'static' : l.expires_at === null ? '-' : new Date(l.expires_at).toISOString();
          console.log(`${l.address.padEnd(16)} ${l.mac}  ${(l.hostname ?? '-').padEnd(24)} ${until}`);
        }
      });
    });

  dns
    .command('publish')
    .description("print the signed TXT records to publish at _buckyos.<zone>, so other zones' cyfs-ns can verify this zone's names (a core device)")
    .requiredOption('--address <ip...>', "the zone's public address(es), IPv4 and/or IPv6")
    .option('--ttl <seconds>', 'how long resolvers may keep answers', '3600')
    .option('--days <n>', 'how long the signed names stay valid (republish before then)', '30')
    .option('--json', 'machine-readable output')
    .action(async (o: { address: string[]; ttl: string; days: string; json?: boolean }, cmd: Command) => {
      const c = ctx(cmd);
      const id = await loadNodeIdentity(c.paths.etc);
      const days = Number(o.days);
      if (!Number.isInteger(days) || days < 1 || days > 365) throw new Error('--days: a whole number from 1 to 365');
      const a = o.address.filter((x) => !x.includes(':'));
      const aaaa = o.address.filter((x) => x.includes(':'));
      const entry = { ...(a.length ? { a } : {}), ...(aaaa.length ? { aaaa } : {}) };
      const iat = Math.floor(Date.now() / 1000);
      const doc = zoneNamesSchema.safeParse({ typ: 'zone-names', zone: id.boot.zone, names: { '@': entry, '*': entry }, ttl: Number(o.ttl), iat, exp: iat + Math.min(days * 86400, DOCUMENT_LIFETIME_SEC) });
      if (!doc.success) throw new Error(`cannot sign these names: ${doc.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      let enrol;
      try {
        enrol = loadKeyFile(join(c.paths.etc, IDENTITY_FILES.enrolKey));
      } catch {
        throw new Error('this device holds no enrolment key: run `buckyos dns publish` on a core device');
      }
      const names = await signDocument(doc.data, enrol.privateKey);
      const owner = `${ZONE_RECORDS_LABEL}.${id.boot.zone}`;
      const ttl = Number(o.ttl);
      print(o.json, { owner, owner_key: id.boot.owner_key, boot: `${BOOT_PREFIX}${id.bootJwt}`, names: `${NAMES_PREFIX}${names}` }, () => {
        console.log(`; publish at your DNS provider; other zones trust these names with owner_key ${id.boot.owner_key}`);
        console.log(txtLine(owner, ttl, `${BOOT_PREFIX}${id.bootJwt}`));
        console.log(txtLine(owner, ttl, `${NAMES_PREFIX}${names}`));
      });
    });
}
