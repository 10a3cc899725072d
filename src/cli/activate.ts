// `buckyos activate`: the same prepare → owner signs → commit flow the browser uses, from a script.
import type { Command } from 'commander';
import { activateDevice } from '../lib/identity/activation-client.ts';
import { generateMnemonic } from '../lib/identity/mnemonic.ts';
import { CliContext, promptHidden } from './context.ts';

export function registerActivate(program: Command): void {
  program
    .command('activate')
    .description('activate a device into a new zone (owner words from $BUCKYOS_MNEMONIC, or --generate-mnemonic)')
    .requiredOption('--zone <name>', 'zone host name, e.g. alice.example.com')
    .requiredOption('--owner <name>', 'owner (admin) user name')
    .option('--device <url>', 'the device\'s activation address (default: this node\'s activation port)')
    .option('--device-name <name>', 'name for the device (default: from its host name)')
    .option('--gateway <mode>', 'lan, public or sn', 'lan')
    .option('--generate-mnemonic', 'create new owner words and print them once; write them down')
    .action(async (opts: { zone: string; owner: string; device?: string; deviceName?: string; gateway: 'lan' | 'public' | 'sn'; generateMnemonic?: boolean }, cmd: Command) => {
      let mnemonic = process.env.BUCKYOS_MNEMONIC;
      if (opts.generateMnemonic) {
        mnemonic = generateMnemonic();
        console.log('Your owner recovery words (the only way to prove you own this zone; write them down now):');
        console.log(`\n  ${mnemonic}\n`);
      }
      if (!mnemonic) throw new Error('give the owner words in $BUCKYOS_MNEMONIC or pass --generate-mnemonic');
      const password = process.env.BUCKYOS_PASSWORD ?? (await promptHidden(`admin password for ${opts.owner}: `));
      const url = opts.device ?? `http://127.0.0.1:${new CliContext(cmd.optsWithGlobals()).config.ports.activation}`;
      const r = await activateDevice(url, {
        mnemonic, zone: opts.zone, owner: opts.owner, password, deviceName: opts.deviceName, gateway: { mode: opts.gateway },
      });
      console.log(`activated: device ${r.device_name} (${r.device_did}) is now in zone ${r.zone} owned by ${r.owner}`);
    });
}
