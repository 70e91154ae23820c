import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CHROMIUM_HINT, findChromium } from '../support/browser';
import { projectRoot, tempDir } from '../support/processes';

const FIXTURE = path.join(__dirname, 'fixtures', 'browser-gate.fixture.js');

/** A PATH with node and nothing else, so no chromium is found on it. */
function pathWithoutChromium(): string {
  const dir = tempDir('bin');
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  return dir;
}

/** Runs the fixture's one browser test in a mocha child; its JSON report and stderr. */
function runFixture(env: Record<string, string | undefined>): {
  code: number | null;
  stats: { passes: number; pending: number; failures: number };
  failure?: string;
  stderr: string;
} {
  const mocha = path.join(projectRoot(), 'node_modules', 'mocha', 'bin', 'mocha.js');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  const r = spawnSync(process.execPath, [mocha, '--no-config', '--reporter', 'json', '--timeout', '60000', FIXTURE], {
    encoding: 'utf8',
    env: childEnv,
    timeout: 90_000,
  });
  const report = JSON.parse(r.stdout) as {
    stats: { passes: number; pending: number; failures: number };
    failures: { err: { message: string } }[];
  };
  return { code: r.status, stats: report.stats, failure: report.failures[0]?.err.message, stderr: r.stderr };
}

describe('browser tests without a browser', function () {
  this.timeout(120_000);

  describe('findChromium', () => {
    it('takes CHROMIUM_PATH when it names an executable, and names it when it does not', () => {
      assert.deepEqual(findChromium({ CHROMIUM_PATH: process.execPath, PATH: '' }), { path: process.execPath });
      const missing = findChromium({ CHROMIUM_PATH: '/nonexistent/chromium', PATH: process.env.PATH });
      assert.equal(missing.path, undefined);
      assert.match(
        (missing as { why: string }).why,
        /^CHROMIUM_PATH=\/nonexistent\/chromium is not an executable file$/,
      );
    });

    it('looks for chromium on the PATH, skipping files that are not executable', () => {
      const dir = tempDir('path');
      fs.writeFileSync(path.join(dir, 'chromium'), '');
      assert.equal(findChromium({ PATH: dir }).path, undefined, 'a file without x bit is not a browser');
      fs.chmodSync(path.join(dir, 'chromium'), 0o755);
      assert.equal(findChromium({ PATH: `/nonexistent${path.delimiter}${dir}` }).path, path.join(dir, 'chromium'));
    });
  });

  describe('a mocha run', () => {
    const none = () => ({ CHROMIUM_PATH: undefined, PATH: pathWithoutChromium() });

    it('reports the test pending with one line naming what to install', () => {
      const r = runFixture({ ...none(), DSTORE_REQUIRE_BROWSER: undefined });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        { passes: r.stats.passes, pending: r.stats.pending, failures: r.stats.failures },
        { passes: 0, pending: 1, failures: 0 },
      );
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.equal(
        lines[0],
        `browser tests skipped: no chromium or chromium-browser on the PATH and CHROMIUM_PATH is not set; ${CHROMIUM_HINT}`,
      );
      assert.match(lines[0], /apt-get install -y chromium/);
    });

    it('names a CHROMIUM_PATH that points nowhere', () => {
      const r = runFixture({ ...none(), CHROMIUM_PATH: '/nonexistent/chromium', DSTORE_REQUIRE_BROWSER: undefined });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stats.pending, 1);
      assert.match(
        r.stderr,
        /^browser tests skipped: CHROMIUM_PATH=\/nonexistent\/chromium is not an executable file; install Chromium/,
      );
    });

    it('fails the test instead with DSTORE_REQUIRE_BROWSER=1, as CI sets it', () => {
      const r = runFixture({ ...none(), CHROMIUM_PATH: '/nonexistent/chromium', DSTORE_REQUIRE_BROWSER: '1' });
      assert.notEqual(r.code, 0);
      assert.deepEqual({ pending: r.stats.pending, failures: r.stats.failures }, { pending: 0, failures: 1 });
      assert.match(
        r.failure ?? '',
        /^DSTORE_REQUIRE_BROWSER=1 but CHROMIUM_PATH=\/nonexistent\/chromium is not an executable file: install Chromium/,
      );
    });

    it('runs the test when a Chromium is found', function () {
      if (findChromium().path === undefined && process.env.DSTORE_REQUIRE_BROWSER !== '1') this.skip();
      const r = runFixture({});
      assert.equal(r.code, 0, r.failure ?? r.stderr);
      assert.deepEqual({ passes: r.stats.passes, pending: r.stats.pending }, { passes: 1, pending: 0 });
    });
  });
});
