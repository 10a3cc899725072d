// `buckyos start` and `buckyos node`: prepare a node root and run node_daemon (in the foreground, or detached).
import { spawn } from 'node:child_process';
import { mkdirSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadNodeConfig, nodeConfigSchema, nodePaths, saveNodeConfig, type NodePaths } from '../lib/config/node-config.ts';
import { readStatusFile, runNodeDaemon } from '../kernel/node-daemon/main.ts';
import { uiUrl } from './status.ts';

const BIN = fileURLToPath(new URL('../../bin/buckyos.mjs', import.meta.url));

export function prepareRoot(root: string | undefined, portOffset: number | undefined): NodePaths {
  const paths = nodePaths(root);
  for (const d of [paths.root, paths.etc, paths.data, paths.logs, paths.run]) mkdirSync(d, { recursive: true, mode: d === paths.etc ? 0o700 : 0o755 });
  if (!existsSync(paths.nodeConfig) || portOffset !== undefined) {
    const current = loadNodeConfig(paths);
    const off = portOffset ?? 0;
    // Every port, so that a second zone on this machine collides with the first on none of them.
    const base = nodeConfigSchema.shape.ports.parse(undefined);
    const ports = Object.fromEntries(Object.entries(base).map(([k, v]) => [k, v + off]));
    saveNodeConfig(paths, { ...current, ports });
  }
  return paths;
}

async function waitForStatus(paths: NodePaths, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = readStatusFile(paths);
    if (s && (s.state === 'activation' || s.state === 'running')) return s;
    await new Promise((r) => setTimeout(r, 200));
  }
  return readStatusFile(paths);
}

function explain(paths: NodePaths, s: ReturnType<typeof readStatusFile>): void {
  if (!s) {
    console.log(`node is starting; see ${join(paths.logs, 'node-daemon')} for progress`);
    return;
  }
  if (s.state === 'activation') {
    console.log(`This device is not activated yet. Its activation address is ${s.activation_url}`);
    console.log(`Activate it from this machine with:`);
    console.log(`  node ${BIN} activate --root ${paths.root} --zone <your.zone.name> --owner <name> --generate-mnemonic`);
    console.log(`or from another machine with \`buckyos activate --device ${s.activation_url} ...\`.`);
  } else {
    console.log(`zone ${s.zone} is running on node ${s.node}; \`buckyos status --root ${paths.root}\` shows its services`);
    console.log(`system UI: ${uiUrl(loadNodeConfig(paths))}`);
  }
}

export function registerStart(program: Command): void {
  program
    .command('start')
    .description('set up a node root (default /opt/buckyos) and run this device\'s node daemon')
    .option('--port-offset <n>', 'add n to every default port (a development zone without root)', (v) => Number(v))
    .option('--detach', 'run in the background and return once the node is up')
    .action(async (opts: { portOffset?: number; detach?: boolean }, cmd: Command) => {
      const root = cmd.optsWithGlobals().root as string | undefined;
      const paths = prepareRoot(root, opts.portOffset);
      if (opts.detach) {
        const out = openSync(join(paths.logs, 'node-daemon.out'), 'a');
        const child = spawn(process.execPath, [BIN, 'node', '--root', paths.root], { detached: true, stdio: ['ignore', out, out] });
        child.unref();
        const s = await waitForStatus(paths, 60_000);
        explain(paths, s);
        return;
      }
      let told: string | undefined;
      const tell = async () => {
        const s = await waitForStatus(paths, 60_000);
        if (s?.state !== told) explain(paths, s);
        told = s?.state;
      };
      void tell();
      await runNodeDaemon(paths.root);
      await tell();
    });

  program
    .command('node')
    .description('run the node daemon in the foreground (what `start` runs)')
    .action(async (_o: unknown, cmd: Command) => {
      await runNodeDaemon(cmd.optsWithGlobals().root);
    });
}
