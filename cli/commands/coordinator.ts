import type { Command } from 'commander';
import { renderSettingsHelp } from '../../common/settings-doc';
import { main as coordinatorMain } from '../../coordinator/main';

/** `dstore coordinator`: runs a coordinator in this process (settings from the environment). */
export function registerCoordinatorCommand(program: Command): void {
  program
    .command('coordinator')
    .description(
      'run a coordinator: the HTTP API, placement, ingest and merged reads (settings: REDIS_URL, DSTORE_HOST, DSTORE_PORT, DSTORE_REPLICAS, …)',
    )
    .option('--host <host>', 'address to listen on (overrides DSTORE_HOST)')
    .option('-p, --port <port>', 'port to listen on (overrides DSTORE_PORT)')
    .option('-r, --replicas <n>', 'replication factor (overrides DSTORE_REPLICAS)')
    .addHelpText('after', () => renderSettingsHelp('coordinator'))
    .action((o: { host?: string; port?: string; replicas?: string }) => {
      if (o.host) process.env.DSTORE_HOST = o.host;
      if (o.port) process.env.DSTORE_PORT = o.port;
      if (o.replicas) process.env.DSTORE_REPLICAS = o.replicas;
      coordinatorMain();
    });
}
