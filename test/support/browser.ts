import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { tempDir } from './processes';

/** What the browser tests need and how to get it, in the one line a skipped run prints. */
export const CHROMIUM_HINT =
  'install Chromium (Debian/Ubuntu: apt-get install -y chromium; macOS: brew install --cask chromium) or set CHROMIUM_PATH to a Chromium or Chrome executable';

/** Names a Chromium goes by on the PATH (Debian: chromium; Ubuntu and Alpine: chromium-browser). */
const PATH_NAMES = ['chromium', 'chromium-browser'];

/** Where a Chromium was found, or why none was. */
export type ChromiumLookup = { path: string } | { path?: undefined; why: string };

function isExecutable(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Chromium the browser tests drive: `$CHROMIUM_PATH` when set (it alone decides, so a
 * mistyped path is reported rather than another browser silently used), else the first
 * `chromium` or `chromium-browser` on the PATH. playwright-core brings no browser of its own.
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): ChromiumLookup {
  const given = env.CHROMIUM_PATH;
  if (given) return isExecutable(given) ? { path: given } : { why: `CHROMIUM_PATH=${given} is not an executable file` };
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of PATH_NAMES) {
      const file = path.join(dir, name);
      if (isExecutable(file)) return { path: file };
    }
  }
  return { why: `no ${PATH_NAMES.join(' or ')} on the PATH and CHROMIUM_PATH is not set` };
}

let told = false;

/**
 * The Chromium for a browser test, or the test is skipped (mocha pending) with one line on
 * stderr naming what to install, once per run. With `DSTORE_REQUIRE_BROWSER=1` (CI sets it)
 * a missing browser fails the test instead, so a CI run never skips them silently.
 */
export function chromiumOrSkip(ctx: Mocha.Context, env: NodeJS.ProcessEnv = process.env): string {
  const found = findChromium(env);
  if (found.path !== undefined) return found.path;
  if (env.DSTORE_REQUIRE_BROWSER === '1') {
    throw new Error(`DSTORE_REQUIRE_BROWSER=1 but ${found.why}: ${CHROMIUM_HINT}`);
  }
  if (!told) {
    told = true;
    process.stderr.write(`browser tests skipped: ${found.why}; ${CHROMIUM_HINT}\n`);
  }
  ctx.skip();
}

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Runs `fn` in a headless Chromium found by test/support/browser.ts (none: the test is pending, or fails with
 * DSTORE_REQUIRE_BROWSER=1).
 */
export async function withBrowser<T>(test: Mocha.Context, fn: (ctx: BrowserContext) => Promise<T>): Promise<T> {
  const executablePath = chromiumOrSkip(test);
  const ctx = await chromium.launchPersistentContext(tempDir('chromium-profile'), {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 720 },
  });
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}
