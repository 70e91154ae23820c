#!/usr/bin/env node
import * as fs from 'node:fs';
import * as path from 'node:path';
import { replaceSettingsTable } from '../common/settings-doc';

/** `npm run docs:settings`: rewrites README.md's settings table from common/settings.ts. */
function main(): void {
  const file = path.resolve(__dirname, '..', '..', 'README.md');
  const before = fs.readFileSync(file, 'utf8');
  const after = replaceSettingsTable(before);
  if (after === before) {
    process.stdout.write('README.md: settings table already up to date\n');
    return;
  }
  fs.writeFileSync(file, after);
  process.stdout.write('README.md: settings table rewritten from common/settings.ts\n');
}

main();
