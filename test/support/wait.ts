/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long. @defaultValue 10000 */
  timeoutMs?: number;
  /** Pause between two polls. @defaultValue 100 */
  intervalMs?: number;
  /** What is awaited, for the timeout message: `timed out after 5000ms waiting for <what>`. */
  what: string;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `fn` until it returns (or resolves to) a truthy value and returns that value.
 * An error thrown by `fn` counts as "not yet"; the last one is quoted if the wait times out.
 *
 * @throws Error `timed out after <timeoutMs>ms waiting for <what>[; last error: …]`
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(intervalMs, left));
  }
  let msg = `timed out after ${timeoutMs}ms waiting for ${opts.what}`;
  if (lastError !== undefined) {
    msg += `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
  }
  throw new Error(msg);
}
