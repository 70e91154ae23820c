#!/usr/bin/env node
import 'reflect-metadata';
import { loadWorkerOptions } from '../common/config';
import { runProcess } from '../common/process';
import { logRedisRetries } from '../common/redis';
import { watchSupervisor } from '../common/supervisor-watch';
import { Worker } from './worker';

/** Entry point of a worker process: `node dist/worker/main.js` or `dstore worker`. */
export function main(): void {
  runProcess('worker', loadWorkerOptions, (opts, log) => {
    const worker = new Worker(opts, log);
    // Its connections start trying at once; each failed attempt is a warn line with its id.
    logRedisRetries(worker.log);
    // Under dstore up: a SIGKILLed supervisor must not leave this process behind (SIGTERM is the graceful stop).
    watchSupervisor((pid) => {
      worker.log.warn({ supervisorPid: pid }, `dstore up (pid ${pid}) is gone: stopping`);
      process.kill(process.pid, 'SIGTERM');
    });
    return worker;
  });
}

if (require.main === module) main();
