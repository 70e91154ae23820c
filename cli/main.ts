#!/usr/bin/env node
import 'reflect-metadata';
import { Command } from 'commander';
import { DESCRIPTION, VERSION } from '../common/version';
import { registerClientCommands } from './commands';
import { registerAclCommand } from './commands/acl';
import { registerCompletionCommand } from './commands/completion';
import { registerCoordinatorCommand } from './commands/coordinator';
import { registerDemoCommand } from './commands/demo';
import { registerUpCommand } from './commands/up';
import { registerWorkerCommand } from './commands/worker';

/** Builds the `dstore` command line. Every command lives in cli/commands/. */
export function buildProgram(): Command {
  const program = new Command('dstore')
    .description(DESCRIPTION)
    .version(VERSION, '-V, --version', 'print the dstore version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) });
  registerClientCommands(program);
  registerCoordinatorCommand(program);
  registerWorkerCommand(program);
  registerUpCommand(program);
  registerDemoCommand(program);
  registerAclCommand(program);
  registerCompletionCommand(program);
  return program;
}

/** Runs the CLI: one readable line and exit code 1 on any error. */
export async function main(argv = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`dstore: ${(e as Error).message}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main();
