import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

/** Options of {@link SupervisedProcess}. */
export interface SupervisedOptions {
  /** Who it is in the lines it reports: `coordinator`, `worker w2`, `redis-server`. */
  name: string;
  command: string;
  args: string[];
  /** Its whole environment. */
  env: NodeJS.ProcessEnv;
  /** Where its stdout and stderr go (appended, across restarts). */
  logFile: string;
  /** One line per event (an exit, and what follows); for people, on stderr. */
  report: (line: string) => void;
  /** Restart it when it dies (once {@link SupervisedProcess.supervise} is called). @defaultValue true */
  restart?: boolean;
  /** First pause before a restart; it doubles at each quick death. @defaultValue 1000 */
  minDelayMs?: number;
  /** Longest pause before a restart. @defaultValue 30000 */
  maxDelayMs?: number;
  /** A run at least this long resets the pause to `minDelayMs`. @defaultValue 60000 */
  stableMs?: number;
}

/** How a process ended, as the lines say it. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** `code 1: <its last error line>` or `signal SIGKILL`. */
  why: string;
  at: Date;
}

/** `12:03:04`, local time. */
export function clock(d: Date): string {
  return d.toTimeString().slice(0, 8);
}

/**
 * The last error a process logged before it ended, from the end of its log: the `msg` (and
 * `err.message`) of its last JSON line at level error or fatal. Undefined when none.
 */
export function lastError(logFile: string): string | undefined {
  let text: string;
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 16 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      const l = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((l.level ?? 0) < 50) continue;
      const err = l.err?.message?.split('\n')[0];
      return err && err !== l.msg ? `${l.msg}: ${err}` : l.msg;
    } catch {
      continue;
    }
  }
  return undefined;
}

/**
 * A child process kept running: in a session of its own (so a terminal's Ctrl-C or hang-up
 * reaches only the supervisor, which stops the children in order), its output appended to
 * a log file, restarted with exponential backoff when it dies (1 s, 2 s, … 30 s; back to
 * 1 s after a minute up), one reported line per death.
 */
export class SupervisedProcess {
  private proc?: ChildProcess;
  private exit?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private delayMs: number;
  private startedAt = 0;
  private supervising = false;
  private stopping = false;
  private readonly exitListeners: ((e: ExitInfo) => void)[] = [];
  /** Restarts so far. */
  restarts = 0;

  constructor(readonly opts: SupervisedOptions) {
    this.delayMs = opts.minDelayMs ?? 1000;
  }

  get name(): string {
    return this.opts.name;
  }

  /** Its pid while it runs. */
  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Calls `fn` whenever it exits (not when {@link stop} ended it). */
  onExit(fn: (e: ExitInfo) => void): void {
    this.exitListeners.push(fn);
  }

  /** Spawns it. Throws when the command cannot be spawned at all. */
  start(): void {
    const out = fs.openSync(this.opts.logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(this.opts.command, this.opts.args, {
        env: this.opts.env,
        stdio: ['ignore', out, out],
        detached: true,
      });
    } finally {
      fs.closeSync(out);
    }
    if (proc.pid === undefined) {
      proc.once('error', () => undefined);
      throw new Error(`could not start ${this.name} (${this.opts.command})`);
    }
    proc.on('error', () => undefined); // a failed kill(); the exit event still comes
    this.proc = proc;
    this.startedAt = Date.now();
    this.exit = new Promise((resolve) => proc.once('exit', (code, signal) => (resolve(), this.exited(code, signal))));
  }

  /** From now on a death is reported and, unless `restart` is false, followed by a restart. */
  supervise(): void {
    this.supervising = true;
  }

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.stopping) return;
    const at = new Date();
    const last = code !== 0 ? lastError(this.opts.logFile) : undefined;
    const why = signal ? `signal ${signal}` : `code ${code}${last ? `: ${last}` : ''}`;
    for (const fn of this.exitListeners) fn({ code, signal, why, at });
    if (!this.supervising) return;
    if (this.opts.restart === false) {
      this.opts.report(`${this.name} exited (${why}) at ${clock(at)}; not restarted (--no-restart)`);
      return;
    }
    const min = this.opts.minDelayMs ?? 1000;
    if (Date.now() - this.startedAt >= (this.opts.stableMs ?? 60_000)) this.delayMs = min;
    const delay = this.delayMs;
    this.delayMs = Math.min(delay * 2, this.opts.maxDelayMs ?? 30_000);
    this.opts.report(`${this.name} exited (${why}) at ${clock(at)}; restarting in ${delay / 1000} s`);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopping) return;
      this.restarts++;
      try {
        this.start();
      } catch (e) {
        this.opts.report(`${this.name}: ${(e as Error).message}; not restarted`);
      }
    }, delay);
  }

  /** Stops it for good: no restart; SIGTERM, then SIGKILL after `graceMs`. Resolves once it has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.running) return;
    const killer = setTimeout(() => this.proc?.kill('SIGKILL'), graceMs);
    this.proc!.kill('SIGTERM');
    await this.exit;
    clearTimeout(killer);
  }

  /** Ends it now (SIGKILL), for good. */
  kill(): void {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.running) this.proc!.kill('SIGKILL');
  }
}
