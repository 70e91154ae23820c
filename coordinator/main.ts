#!/usr/bin/env node
import 'reflect-metadata';
import { loadCoordinatorOptions } from '../common/config';
import { runProcess } from '../common/process';
import { Coordinator } from './coordinator';

/** Entry point of a coordinator process: `node dist/coordinator/main.js` or `dstore coordinator`. */
export function main(): void {
  runProcess('coordinator', loadCoordinatorOptions, (opts, log) => new Coordinator(opts, log));
}

if (require.main === module) main();
