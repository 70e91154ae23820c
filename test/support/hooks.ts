/**
 * Mocha root hook plugin (loaded through .mocharc.json `require`). After the whole run it
 * kills children and Redis instances that tests left running, stops the shared Redis,
 * removes the run's temp dir, and fails the run naming every leaked child or Redis:
 * with `exit: true` mocha would not hang on them, so this is where leaks get noticed.
 */
import { killAllChildren, liveChildren, removeTempRoot } from './processes';
import { stopAllRedis } from './redis';

async function cleanup(this: Mocha.Context): Promise<void> {
  this.timeout(60_000);
  const leaked = liveChildren().map((h) => `${h.name} (pid ${h.pid})`);
  await killAllChildren();
  const survivors = liveChildren().map((h) => `${h.name} (pid ${h.pid})`);
  leaked.push(...(await stopAllRedis()));
  removeTempRoot();
  const problems: string[] = [];
  if (leaked.length > 0) problems.push(`left running by tests (now killed): ${leaked.join(', ')}`);
  if (survivors.length > 0) problems.push(`still alive after SIGKILL: ${survivors.join(', ')}`);
  if (problems.length > 0) {
    throw new Error(
      `test harness: ${problems.join('; ')}. Stop every child and Redis you start in an after/afterEach hook.`,
    );
  }
}

/** The root hooks mocha picks up from this module. */
export const mochaHooks: Mocha.RootHookObject = {
  beforeAll(this: Mocha.Context) {
    // A root-hook-plugin afterAll would run BEFORE the top-level after() hooks of test files
    // (it is registered first), flagging children those hooks are about to stop. Appending
    // our hook to the root suite once everything is loaded makes it run last.
    const rootSuite = this.test?.parent;
    if (!rootSuite) throw new Error('test harness: root suite not found');
    rootSuite.afterAll('dstore test harness cleanup', cleanup);
  },
};

// Mocha re-emits a user unhandled rejection on `process` and ignores it if nobody listens;
// throwing turns it into an uncaught exception, which mocha pins on the running test.
process.on('unhandledRejection', (reason) => {
  throw reason instanceof Error ? reason : new Error(`unhandled rejection: ${String(reason)}`);
});

// Without a handler Node dies on these signals without running 'exit' listeners, which
// is where the support modules kill children; mocha's launcher forwards Ctrl-C as SIGINT
// then SIGTERM, and CI cancels jobs with SIGTERM.
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    console.error(`\n[test harness] ${signal}: killing test children and Redis`);
    process.exit(code);
  });
}
