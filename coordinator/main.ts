#!/usr/bin/env node
import 'reflect-metadata';
import { loadCoordinatorOptions } from '../common/config';
import { runProcess } from '../common/process';
import { logRedisRetries } from '../common/redis';
import { watchSupervisor } from '../common/supervisor-watch';
import { Coordinator } from './coordinator';

/** Entry point of a coordinator process: `node dist/coordinator/main.js` or `dstore coordinator`. */
export function main(): void {
  runProcess('coordinator', loadCoordinatorOptions, (opts, log) => {
    const coordinator = new Coordinator(opts, log);
    // Its connections start trying at once; each failed attempt is a warn line with its id.
    logRedisRetries(coordinator.log);
    // Under dstore up: a SIGKILLed supervisor must not leave this process behind (SIGTERM is the graceful stop).
    watchSupervisor((pid) => {
      coordinator.log.warn({ supervisorPid: pid }, `dstore up (pid ${pid}) is gone: stopping`);
      process.kill(process.pid, 'SIGTERM');
    });
    return coordinator;
  });
}

if (require.main === module) main();
