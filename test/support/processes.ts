import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A child process started by {@link spawnNode}. */
export interface ChildHandle {
  /** Name given at spawn, used in log file names and leak reports. */
  name: string;
  pid: number;
  /** Where its stdout and stderr go (appended). */
  logFile: string;
  child: ChildProcess;
  /** Sends `signal` (default SIGTERM) unless the child has already exited. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves with the exit code/signal once the child has exited; never rejects. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait up to `ms` (default 10 s), then SIGKILL; resolves once the child has exited. */
  stop(ms?: number): Promise<void>;
  /** Last `n` (default 50) lines of its log, for assertion messages. */
  tail(n?: number): string;
}

/** Options of {@link spawnNode} beyond the spec'd four arguments. */
export interface SpawnOptions {
  /** Working directory of the child. @defaultValue the project root */
  cwd?: string;
}

const live = new Set<ChildHandle>();
let seq = 0;
let tempRoot: string | undefined;
let root: string | undefined;

/** True when KEEP_TEST_TMP=1: temp dirs and logs are left behind for inspection. */
export function keepTemp(): boolean {
  return process.env.KEEP_TEST_TMP === '1';
}

/**
 * The project root: DSTORE_ROOT if set, else the nearest directory holding a package.json
 * above this file, else above the working directory. Walking up (rather than a fixed
 * `../../..`) lets the harness run from any output directory, e.g. a one-off `tsc --outDir`.
 */
export function projectRoot(): string {
  if (root) return root;
  if (process.env.DSTORE_ROOT) return (root = path.resolve(process.env.DSTORE_ROOT));
  for (const start of [__dirname, process.cwd()]) {
    for (let dir = start; ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, 'package.json'))) return (root = dir);
      if (path.dirname(dir) === dir) break;
    }
  }
  throw new Error(
    `cannot find the project root (no package.json above ${__dirname} or ${process.cwd()}); set DSTORE_ROOT`,
  );
}

/** The per-run temp root (created on first use), e.g. /tmp/dstore-test-AbC123. */
export function tempRootDir(): string {
  tempRoot ??= fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-test-'));
  return tempRoot;
}

function safeLabel(label: string): string {
  return label.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60) || 'x';
}

/** A fresh temp directory under the run's temp root (removed at the end of the run unless KEEP_TEST_TMP=1). */
export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(tempRootDir(), `${safeLabel(label)}-`));
}

/** Removes the run's temp root unless KEEP_TEST_TMP=1 (then prints where it is). */
export function removeTempRoot(): void {
  if (!tempRoot) return;
  if (keepTemp()) {
    console.error(`KEEP_TEST_TMP=1: test files and logs kept in ${tempRoot}`);
  } else {
    fs.rmSync(tempRoot, { recursive: true, force: true });
  }
  tempRoot = undefined;
}

/** Last `n` lines of a file ('' when it does not exist); reads at most the last 256 KiB. */
export function tailFile(file: string, n = 50): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines.slice(-n).join('\n');
  } finally {
    fs.closeSync(fd);
  }
}

function timeout(ms: number): { promise: Promise<'timeout'>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Spawns `process.execPath --enable-source-maps <projectRoot>/<script> ...args` (an absolute
 * `script` is used as is) with `env` merged over process.env, stdout+stderr appended to a log
 * file in the run's temp dir. The child is registered so the root hook kills it if a test
 * leaves it running. An unexpected exit throws nothing: inspect {@link ChildHandle.exited}.
 */
export function spawnNode(
  name: string,
  script: string,
  args: string[],
  env: Record<string, string>,
  opts: SpawnOptions = {},
): ChildHandle {
  const cwd = opts.cwd ?? projectRoot();
  const scriptPath = path.resolve(projectRoot(), script);
  const logDir = path.join(tempRootDir(), 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${safeLabel(name)}-${++seq}.log`);
  // A file rather than pipes: nothing is lost if the test never reads it, and no pipe
  // keeps the mocha process alive.
  const fd = fs.openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // DSTORE_CHILD_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`, which NODE_OPTIONS refuses)
    // go to every child's node; the bench uses it to profile the cluster.
    const nodeArgs = (process.env.DSTORE_CHILD_NODE_ARGS ?? '').split(' ').filter(Boolean);
    child = spawn(process.execPath, ['--enable-source-maps', ...nodeArgs, scriptPath, ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', fd, fd],
    });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) {
    // spawn reports this failure asynchronously; swallow that event, the throw says it all.
    child.once('error', () => undefined);
    throw new Error(`could not spawn ${name}: ${process.execPath} ${scriptPath}`);
  }
  const pid = child.pid;
  let done = false;

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(handle);
      resolve({ code, signal });
    });
  });
  child.on('error', (err) => {
    // e.g. kill() failing; the exit event still settles `exited`.
    fs.appendFileSync(logFile, `[harness] child process error: ${err.message}\n`);
  });

  const handle: ChildHandle = {
    name,
    pid,
    logFile,
    child,
    exited,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (!done) child.kill(signal);
    },
    async stop(ms = 10_000) {
      if (done) return;
      child.kill('SIGTERM');
      const t1 = timeout(ms);
      const first = await Promise.race([exited, t1.promise]);
      t1.cancel();
      if (first !== 'timeout') return;
      child.kill('SIGKILL');
      const t2 = timeout(5_000);
      const second = await Promise.race([exited, t2.promise]);
      t2.cancel();
      if (second === 'timeout') throw new Error(`${name} (pid ${pid}) did not exit within 5 s of SIGKILL`);
    },
    tail(n = 50) {
      return tailFile(logFile, n);
    },
  };
  live.add(handle);
  return handle;
}

/** Options of {@link startWorkerProcess}. */
export interface WorkerProcessOptions {
  redisUrl: string;
  prefix: string;
  id: string;
  dataDir: string;
  /** Extra or overriding environment (e.g. DSTORE_HEARTBEAT_MS). */
  env?: Record<string, string>;
}

/** Starts `dist/worker/main.js` as `worker-<id>` with debug JSON logs. */
export function startWorkerProcess(o: WorkerProcessOptions): ChildHandle {
  return spawnNode(`worker-${o.id}`, 'dist/worker/main.js', [], {
    REDIS_URL: o.redisUrl,
    DSTORE_PREFIX: o.prefix,
    DSTORE_WORKER_ID: o.id,
    DSTORE_DATA_DIR: o.dataDir,
    LOG_LEVEL: 'debug',
    LOG_FORMAT: 'json',
    ...o.env,
  });
}

/** Children started by {@link spawnNode} that have not exited yet. */
export function liveChildren(): ChildHandle[] {
  return [...live];
}

/** Stops every child still running (SIGTERM, then SIGKILL after 5 s), all at once. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((h) => h.stop(5_000).catch(() => undefined)));
}

// Last resort when the run ends abruptly (process.exit, a signal turned into exit by the
// hooks): children must not outlive the test run. Only synchronous work is possible here.
process.on('exit', () => {
  for (const h of live) {
    try {
      h.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  if (tempRoot && !keepTemp()) {
    try {
      fs.rmSync(tempRoot, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

/** Runs the dstore CLI to completion against `url` (as DSTORE_URL); `out` is what it wrote, stdout and stderr. */
export async function runCli(
  url: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  const child = spawnNode(`cli-${args.slice(0, 2).join('-')}`, 'dist/cli/main.js', args, {
    DSTORE_URL: url,
    LOG_FORMAT: 'json',
    ...env,
  });
  const exit = await child.exited;
  return { code: exit.code, out: fs.readFileSync(child.logFile, 'utf8') };
}
