import type { Command } from 'commander';
import { registerBackupCommand } from './backup';
import { registerWatchCommand } from './watch';
import { registerDeadLettersCommand } from './dead-letters';
import { registerDeleteCommand } from './delete';
import { registerRebalanceCommand } from './drain';
import { registerFetchCommand } from './fetch';
import { registerGetCommand } from './get';
import { registerIndexCommand } from './index-cmd';
import { registerPostCommand } from './post';
import { registerShellCommand } from './shell';
import { registerStatusCommand } from './status';
import { registerTableCommand } from './table';
import { registerUpdateCommand } from './update';
import { registerWorkersCommand } from './workers';

/**
 * Registers the commands that talk to a coordinator over HTTP: table, index, post, fetch,
 * get, update, delete, workers, status, dead-letters, rebalance, shell, backup and watch. Each takes `--url`
 * (else `DSTORE_URL`, else http://127.0.0.1:7070) and fails with an Error whose message is
 * the one line to print.
 */
export function registerClientCommands(program: Command): void {
  registerTableCommand(program);
  registerIndexCommand(program);
  registerPostCommand(program);
  registerFetchCommand(program);
  registerGetCommand(program);
  registerUpdateCommand(program);
  registerDeleteCommand(program);
  registerWorkersCommand(program);
  registerStatusCommand(program);
  registerDeadLettersCommand(program);
  registerRebalanceCommand(program);
  registerShellCommand(program);
  registerBackupCommand(program);
  registerWatchCommand(program);
}
