/**
 * The variable `dstore up` sets on every worker and coordinator it starts: its own pid.
 * Internal to `dstore up` (not a setting: nobody sets it by hand).
 */
export const SUPERVISOR_PID_ENV = 'DSTORE_SUPERVISOR_PID';

/**
 * When the process was started by `dstore up` (see {@link SUPERVISOR_PID_ENV}), calls
 * `onGone` once that supervisor has disappeared, even killed with SIGKILL: the entry point
 * then stops itself, so no worker or coordinator outlives the `dstore up` that owns it.
 * Checks every `everyMs` without keeping the process alive.
 */
export function watchSupervisor(
  onGone: (pid: number) => void,
  env: NodeJS.ProcessEnv = process.env,
  everyMs = 1000,
): void {
  const pid = Number(env[SUPERVISOR_PID_ENV]);
  if (!Number.isInteger(pid) || pid <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch (e) {
      // EPERM: alive, under another user (cannot be ours, but not gone either).
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') return;
      clearInterval(timer);
      onGone(pid);
    }
  }, everyMs);
  timer.unref();
}
