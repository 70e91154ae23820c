#!/usr/bin/env node
import 'reflect-metadata';
import { loadWorkerOptions } from '../common/config';
import { runProcess } from '../common/process';
import { Worker } from './worker';

/** Entry point of a worker process: `node dist/worker/main.js` or `dstore worker`. */
export function main(): void {
  runProcess('worker', loadWorkerOptions, (opts, log) => new Worker(opts, log));
}

if (require.main === module) main();
