import { createInterface } from 'node:readline/promises';
import { CliError } from './http-client';

/** Asks a yes/no question on the terminal (stderr, so stdout stays clean); true for y or yes. */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/**
 * The check before a command destroys data: with `--yes`, go on; on a terminal, ask
 * `question`; otherwise (a script, a pipe) refuse, saying `what` would be destroyed and
 * that `--yes` confirms it. `command` names the command in those lines.
 */
export async function confirmOrRefuse(
  o: { yes?: boolean },
  command: string,
  what: string,
  question: string,
): Promise<void> {
  if (o.yes) return;
  if (!process.stdin.isTTY)
    throw new CliError(
      `${command} would delete ${what}: add --yes to confirm (stdin is not a terminal, so it cannot ask)`,
    );
  if (!(await confirm(question))) throw new CliError('nothing deleted (not confirmed; --yes skips the question)');
}
