import type { Command } from 'commander';
import { renderSettingsHelp } from '../../common/settings-doc';
import { main as workerMain } from '../../worker/main';
import { registerDrainCommand } from './drain';

/** `dstore worker`: runs one worker in this process (settings from the environment); `dstore worker drain ID`. */
export function registerWorkerCommand(program: Command): void {
  const worker = program
    .command('worker')
    .description(
      'run a worker: applies its ops stream to its SQLite shard and answers FETCH (settings: REDIS_URL, DSTORE_WORKER_ID, DSTORE_DATA_DIR, …)',
    )
    .option('--id <id>', 'worker id (overrides DSTORE_WORKER_ID)')
    .option('--data-dir <dir>', 'shard directory (overrides DSTORE_DATA_DIR)')
    .addHelpText('after', () => renderSettingsHelp('worker'))
    .action((o: { id?: string; dataDir?: string }) => {
      if (o.id) process.env.DSTORE_WORKER_ID = o.id;
      if (o.dataDir) process.env.DSTORE_DATA_DIR = o.dataDir;
      workerMain();
    });
  registerDrainCommand(worker);
}
