// The `buckyos` command. One file per verb group; each uses service clients only, never service internals.
// Verb modules are imported only for the verb being run: a kernel service process (`buckyos service <name>`) then
// loads its own code and nothing else, which keeps each process's memory small.
import { Command } from 'commander';
import { KrpcError } from '../lib/krpc/index.ts';

type Register = (program: Command) => void;
const VERBS: Record<string, () => Promise<Register>> = {
  start: async () => (await import('./start.ts')).registerStart,
  node: async () => (await import('./start.ts')).registerStart,
  service: async () => (await import('./service.ts')).registerService,
  activate: async () => (await import('./activate.ts')).registerActivate,
  status: async () => (await import('./status.ts')).registerStatus,
  user: async () => (await import('./user.ts')).registerUser,
  config: async () => (await import('./config.ts')).registerConfig,
  logs: async () => (await import('./logs.ts')).registerLogs,
  scheduler: async () => (await import('./scheduler.ts')).registerScheduler,
  reset: async () => (await import('./reset.ts')).registerReset,
  device: async () => (await import('./device.ts')).registerDevice,
  join: async () => (await import('./device.ts')).registerJoin,
  zone: async () => (await import('./zone.ts')).registerZone,
  ns: async () => (await import('./ns.ts')).registerNs,
  dns: async () => (await import('./dns.ts')).registerDns,
  fs: async () => (await import('./fs.ts')).registerFs,
};

const program = new Command('buckyos')
  .description('BuckyOS-TS: your devices as one private cloud')
  .option('--root <dir>', 'node root directory (default $BUCKYOS_ROOT or /opt/buckyos)')
  .option('--user <name>', 'act as this zone user (password from $BUCKYOS_PASSWORD or a prompt) instead of the local node identity')
  .showHelpAfterError();

/** The verb is the first argument that is not a global option (or its value). */
function verbOf(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root' || a === '--user') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

try {
  const verb = verbOf(process.argv.slice(2));
  const wanted = verb && VERBS[verb] ? [VERBS[verb]] : [...new Set(Object.values(VERBS))];
  const registered = new Set<Register>();
  for (const load of wanted) {
    const register = await load();
    if (!registered.has(register)) register(program);
    registered.add(register);
  }
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof KrpcError) console.error(`error [${err.code}]: ${err.message}`);
  else console.error(`error: ${(err as Error).message}`);
  process.exit(1);
}
