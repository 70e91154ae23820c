// `npm run lint`: eslint (type-aware, the slow half) and prettier run side by side, each with
// its cache under node_modules/.cache, so a warm run re-checks only changed files; a clean
// clone (CI) has no cache and checks everything. eslint's cache keys on each file's own text,
// so a type changed in one file is not re-checked where another uses it until that file
// changes: `rm -rf node_modules/.cache` for a full run. Exits non-zero when either fails.
import { spawn } from 'node:child_process';

const bin = (name) => new URL(`../node_modules/.bin/${name}`, import.meta.url).pathname;
const steps = [
  [bin('eslint'), ['--cache', '--cache-location', 'node_modules/.cache/eslint/', '.']],
  [bin('prettier'), ['--check', '--cache', '--log-level', 'warn', '.']],
];

const codes = await Promise.all(
  steps.map(
    ([cmd, args]) =>
      new Promise((resolve) => {
        const child = spawn(cmd, args, { stdio: 'inherit' });
        child.on('error', (e) => {
          console.error(`${cmd}: ${e.message}`);
          resolve(1);
        });
        child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
      }),
  ),
);
process.exit(codes.some((c) => c !== 0) ? 1 : 0);
