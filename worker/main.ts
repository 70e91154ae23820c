#!/usr/bin/env node
import 'reflect-metadata';
import { loadWorkerOptions } from '../common/config';
import { runProcess } from '../common/process';
import { logRedisRetries } from '../common/redis';
import { Worker } from './worker';

/** Entry point of a worker process: `node dist/worker/main.js` or `dstore worker`. */
export function main(): void {
  runProcess('worker', loadWorkerOptions, (opts, log) => {
    const worker = new Worker(opts, log);
    // Its connections start trying at once; each failed attempt is a warn line with its id.
    logRedisRetries(worker.log);
    return worker;
  });
}

if (require.main === module) main();
