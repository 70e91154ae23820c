import pino, { type Logger } from 'pino';
import type { CommonOptions } from './config';

export type { Logger };

/**
 * Creates the root logger of a process. Libraries take a logger and scope it
 * (`logger.child({ component: 'ops-consumer' })`); only entry points create one.
 */
export function createLogger(opts: Pick<CommonOptions, 'logLevel' | 'logFormat'>, bindings: Record<string, unknown> = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.logLevel,
    base: { pid: process.pid, ...bindings },
    // Row data never goes above debug; these keys are cut even there.
    redact: { paths: ['rows', 'doc', 'password', 'token'], censor: '[redacted]' },
  };
  if (opts.logFormat === 'pretty') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } });
  }
  return pino(options);
}
