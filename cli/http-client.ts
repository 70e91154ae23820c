import type { Command } from 'commander';
import { readCliToken, readCliUrl } from '../common/config';
import { DstoreError } from '../client/errors';
import { Transport } from '../client/http';
import { inCliTerms, type CliTerms } from './cli-terms';

export { tablePath, type RawBody } from '../client/http';

/**
 * The CLI's side of the coordinator's HTTP API: JSON requests, streamed request bodies
 * and streamed NDJSON answers. Every failure becomes a {@link CliError} whose message is
 * the one line `dstore` prints before exiting 1.
 */

/** A command failed; `message` is the line shown to the user. */
export class CliError extends DstoreError {
  override readonly name = 'CliError';
}

/**
 * The client of a command: the library's transport (client/http.ts), whose errors are
 * {@link CliError}s worded in the command's flags (`terms`).
 */
export class HttpClient extends Transport {
  constructor(
    baseUrl: string,
    token?: string,
    /** How the command that uses this client names the API's query keys (its flags), for error messages. */
    readonly terms: CliTerms = {},
  ) {
    super(baseUrl, token);
  }

  protected override fail(
    message: string,
    status?: number,
    code?: string,
    details: Record<string, unknown> = {},
  ): CliError {
    if (status === undefined || code === undefined) return new CliError(message, status, code, details);
    const hint = status === 401 && !this.token ? ' (set DSTORE_TOKEN to your token secret)' : '';
    return new CliError(inCliTerms(message, details, this.terms) + hint, status, code, details);
  }
}

/** Adds the `--url` option every client command takes. */
export function withUrlOption(cmd: Command): Command {
  return cmd.option('--url <url>', 'coordinator URL (default: $DSTORE_URL, else http://127.0.0.1:7070)');
}

/**
 * The client for a command: `--url` (on the command or an ancestor), else `DSTORE_URL`,
 * else the default. A wrong URL throws a ConfigError naming its source. `terms` are the
 * command's flags for the API's query keys: its error lines name those, not the API's.
 */
export function clientFor(cmd: Command, terms: CliTerms = {}): HttpClient {
  const { url } = cmd.optsWithGlobals<{ url?: string }>();
  const env = { ...process.env };
  // An empty DSTORE_URL means "not set", as for every other setting.
  if (env.DSTORE_URL?.trim() === '') delete env.DSTORE_URL;
  return new HttpClient(readCliUrl(env, url), readCliToken(env), terms);
}
