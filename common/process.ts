import { ConfigError } from './errors';
import { createLogger, type Logger } from './logger';
import { checkRedisTls } from './redis-tls';
import type { CommonOptions } from './config';

/** Something an entry point runs until a signal stops it. */
export interface Service {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The service's scoped logger (with its id); the process's own lines use it when present. */
  readonly log?: Logger;
}

/**
 * Runs a long-lived service as the process's main job: reads its settings (a bad one
 * prints one line naming the variable and exits 1), starts it, and stops it cleanly on
 * SIGTERM / SIGINT (a second signal exits at once).
 */
export function runProcess<O extends CommonOptions>(
  name: string,
  load: () => O,
  make: (opts: O, log: Logger) => Service,
): void {
  let opts: O;
  try {
    opts = load();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`dstore ${name}: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  const root = createLogger(opts, { component: name });
  let service: Service;
  try {
    service = make(opts, root);
  } catch (e) {
    process.stderr.write(`dstore ${name}: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const log = service.log ?? root;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    service.stop().then(
      () => process.exit(0),
      (e) => {
        log.error({ err: e }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A TLS certificate problem is found before the service starts retrying connections forever.
  checkRedisTls(opts)
    .then(() => service.start())
    .catch((e) => {
      // A setting found wrong only at start (TLS, DSTORE_ENCRYPTION_KEY against the catalogue) gets the same one line.
      if (e instanceof ConfigError) process.stderr.write(`dstore ${name}: ${e.message}\n`);
      log.fatal({ err: e }, `${name} failed to start`);
      process.exit(1);
    });
}
