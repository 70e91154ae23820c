import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lastError, SupervisedProcess } from '../../cli/supervisor';
import { tempDir } from '../support/processes';
import { waitFor } from '../support/wait';

/** A node child that logs a fatal JSON line (as a dstore process does) and exits 3. */
const FAILS = `console.log(JSON.stringify({ level: 60, msg: 'worker failed to start', err: { message: 'EACCES: permission denied\\n    at …' } })); process.exit(3)`;

describe('SupervisedProcess (the children of dstore up)', function () {
  this.timeout(30_000);
  const procs: SupervisedProcess[] = [];

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop(2000)));
  });

  function supervised(
    script: string,
    opts: { restart?: boolean } = {},
  ): { p: SupervisedProcess; lines: string[]; log: string } {
    const lines: string[] = [];
    const log = path.join(tempDir('supervised'), 'child.log');
    const p = new SupervisedProcess({
      name: 'worker w9',
      command: process.execPath,
      args: ['-e', script],
      env: process.env,
      logFile: log,
      report: (l) => lines.push(l),
      minDelayMs: 50,
      maxDelayMs: 200,
      ...opts,
    });
    procs.push(p);
    return { p, lines, log };
  }

  it('restarts a child that keeps dying, doubling the pause up to the cap, one line per death naming its last error', async () => {
    const { p, lines } = supervised(FAILS);
    p.supervise();
    p.start();
    await waitFor(() => lines.length >= 4, { what: 'four deaths', timeoutMs: 10_000 });
    const re =
      /^worker w9 exited \(code 3: worker failed to start: EACCES: permission denied\) at \d\d:\d\d:\d\d; restarting in (\S+) s$/;
    assert.deepEqual(
      lines.slice(0, 4).map((l) => re.exec(l)?.[1]),
      ['0.05', '0.1', '0.2', '0.2'],
      lines.join('\n'),
    );
    assert.ok(p.restarts >= 3);
  });

  it('says a child is not restarted with restart off', async () => {
    const { p, lines } = supervised('process.kill(process.pid, "SIGKILL")', { restart: false });
    p.supervise();
    p.start();
    await waitFor(() => lines.length >= 1, { what: 'the exit line', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^worker w9 exited \(signal SIGKILL\) at \d\d:\d\d:\d\d; not restarted \(--no-restart\)$/);
    assert.equal(p.running, false);
  });

  it('stops a child for good: SIGTERM, no restart, no line', async () => {
    const { p, lines } = supervised('setInterval(() => undefined, 1000)');
    p.supervise();
    p.start();
    const pid = p.pid!;
    await p.stop(2000);
    assert.throws(() => process.kill(pid, 0));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(lines, []);
    assert.equal(p.running, false);
  });

  it('lastError reads the last error line of a JSON log, and nothing from other lines', () => {
    const log = path.join(tempDir('log'), 'x.log');
    fs.writeFileSync(
      log,
      [
        '{"level":30,"msg":"starting"}',
        '{"level":50,"msg":"boom","err":{"message":"disk full"}}',
        '{"level":30,"msg":"stopping"}',
        'not json',
      ].join('\n') + '\n',
    );
    assert.equal(lastError(log), 'boom: disk full');
    fs.writeFileSync(log, '{"level":30,"msg":"fine"}\n');
    assert.equal(lastError(log), undefined);
    assert.equal(lastError(path.join(path.dirname(log), 'missing.log')), undefined);
  });
});
