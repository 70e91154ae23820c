import pino, { type Logger } from 'pino';
import type { CommonOptions } from './config';

export type { Logger };

/**
 * Creates the root logger of a process. Libraries take a logger and scope it
 * (`logger.child({ component: 'ops-consumer' })`); only entry points create one.
 */
export function createLogger(
  opts: Pick<CommonOptions, 'logLevel' | 'logFormat'>,
  bindings: Record<string, unknown> = {},
): Logger {
  const options: pino.LoggerOptions = {
    level: opts.logLevel,
    base: { pid: process.pid, ...bindings },
    // Row data never goes above debug; these keys are cut even there.
    redact: {
      paths: [
        'rows',
        'doc',
        'password',
        'token',
        'secret',
        'authorization',
        '*.authorization',
        '*.headers.authorization',
        'redisUrl',
        'encryptionKey',
        '*.encryptionKey',
      ],
      censor: '[redacted]',
    },
  };
  if (opts.logFormat === 'json') {
    // Scoped children add their own `component` after their parent's; pino writes both, so
    // a line would hold the key twice. Keep one, the innermost (what JSON.parse keeps too).
    options.hooks = { streamWrite: dedupeKeys };
  }
  if (opts.logFormat === 'pretty') {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } },
    });
  }
  return pino(options);
}

/** One JSON log line with every repeated key written once (its last value, at its first place). */
export function dedupeKeys(line: string): string {
  if (!line.includes('"component"', line.indexOf('"component"') + 1)) return line;
  try {
    return JSON.stringify(JSON.parse(line)) + '\n';
  } catch {
    return line;
  }
}
