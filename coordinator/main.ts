#!/usr/bin/env node
import 'reflect-metadata';
import { loadCoordinatorOptions } from '../common/config';
import { runProcess } from '../common/process';
import { logRedisRetries } from '../common/redis';
import { Coordinator } from './coordinator';

/** Entry point of a coordinator process: `node dist/coordinator/main.js` or `dstore coordinator`. */
export function main(): void {
  runProcess('coordinator', loadCoordinatorOptions, (opts, log) => {
    const coordinator = new Coordinator(opts, log);
    // Its connections start trying at once; each failed attempt is a warn line with its id.
    logRedisRetries(coordinator.log);
    return coordinator;
  });
}

if (require.main === module) main();
