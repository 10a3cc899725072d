// `buckyos user add|list|passwd|rm|role|disable|enable`: zone users through verify-hub.
import type { Command } from 'commander';
import { verifyHubApi } from '../lib/api/verify-hub.ts';
import { CliContext, promptHidden, table } from './context.ts';

async function newPassword(label: string): Promise<string> {
  if (process.env.BUCKYOS_NEW_PASSWORD) return process.env.BUCKYOS_NEW_PASSWORD;
  const a = await promptHidden(`${label}: `);
  const b = await promptHidden('again: ');
  if (a !== b) throw new Error('the two passwords differ');
  return a;
}

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage zone users (admin)');
  const hub = (cmd: Command) => new CliContext(cmd.optsWithGlobals()).client(verifyHubApi);

  user
    .command('add <name>')
    .description('create a user (password from $BUCKYOS_NEW_PASSWORD or a prompt)')
    .option('--role <role>', 'admin, user, limited or guest', 'user')
    .action(async (name: string, opts: { role: 'admin' | 'user' | 'limited' | 'guest' }, cmd: Command) => {
      const u = await hub(cmd).user_create({ name, role: opts.role, password: await newPassword(`password for ${name}`) });
      console.log(`user ${u.name} created with role ${u.role}`);
    });
  user
    .command('list')
    .description('list users')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { users } = await hub(cmd).user_list({});
      if (opts.json) console.log(JSON.stringify(users, null, 2));
      else console.log(table(['NAME', 'ROLE', 'STATE', 'OWNER'], users.map((u) => [u.name, u.role, u.state, u.owner ? 'yes' : ''])));
    });
  user
    .command('passwd <name>')
    .description('set a user\'s password (new password from $BUCKYOS_NEW_PASSWORD or a prompt)')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const r = await hub(cmd).user_set_password({ name, new_password: await newPassword(`new password for ${name}`) });
      console.log(`password changed; ${r.revoked_sessions} other session(s) ended`);
    });
  user
    .command('role <name> <role>')
    .description('change a user\'s role')
    .action(async (name: string, role: 'admin' | 'user' | 'limited' | 'guest', _o: unknown, cmd: Command) => {
      const u = await hub(cmd).user_set_role({ name, role });
      console.log(`${u.name} is now ${u.role}`);
    });
  for (const [verb, what] of [['disable', 'stop a user from logging in'], ['enable', 'let a disabled user log in again']] as const) {
    user
      .command(`${verb} <name>`)
      .description(what)
      .action(async (name: string, _o: unknown, cmd: Command) => {
        const u = verb === 'disable' ? await hub(cmd).user_disable({ name }) : await hub(cmd).user_enable({ name });
        console.log(`${u.name} is ${u.state}`);
      });
  }
  user
    .command('rm <name>')
    .description('delete a user: ends their sessions and removes their settings and grants at once')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const r = await hub(cmd).user_delete({ name });
      console.log(`user ${name} deleted (${r.deleted_keys} keys removed, ${r.revoked_sessions} session(s) ended)`);
    });
}
