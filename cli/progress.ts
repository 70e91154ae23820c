import { formatBytes, formatCount, formatDuration, truncate } from './format';

/** What an upload has done so far. */
export interface UploadState {
  /** Bytes handed to the connection. */
  sent: number;
  /** Size of the input, when known (a file, not stdin). */
  total?: number;
  /** Rows estimated from the line breaks sent; undefined when lines are not rows (JSON). */
  rows?: number;
  /** Time spent sending (frozen once all input is sent, so rates stay those of the upload). */
  elapsedMs: number;
  /** All input is sent; the coordinator is finishing (last chunks and their acks). */
  done: boolean;
}

/**
 * The progress line of an upload, e.g.
 * `12.3 MB / 45.6 MB (27%)  123,456 rows  52,341 rows/s  4.10 MB/s  ETA 8.0s`.
 */
export function formatUploadProgress(s: UploadState): string {
  const secs = s.elapsedMs / 1000;
  const parts: string[] = [];
  if (s.total !== undefined && s.total > 0) {
    parts.push(`${formatBytes(s.sent)} / ${formatBytes(s.total)} (${Math.floor((100 * s.sent) / s.total)}%)`);
  } else {
    parts.push(`${formatBytes(s.sent)} sent`);
  }
  if (s.rows !== undefined) {
    parts.push(`${formatCount(s.rows)} rows`);
    if (secs > 0) parts.push(`${formatCount(s.rows / secs)} rows/s`);
  }
  if (secs > 0) parts.push(`${(s.sent / 1e6 / secs).toFixed(2)} MB/s`);
  if (s.done) {
    parts.push('all sent, waiting for acks');
  } else if (s.total !== undefined && s.sent > 0 && secs > 0 && s.total >= s.sent) {
    parts.push(`ETA ${formatDuration(((s.total - s.sent) / s.sent) * s.elapsedMs)}`);
  }
  return parts.join('  ');
}

/**
 * A status line redrawn in place on a terminal (carriage return, clear line) a few times
 * a second. On anything that is not a terminal it writes nothing at all, so logs and
 * pipes only ever see the final summary.
 */
export class ProgressLine {
  private timer?: NodeJS.Timeout;
  private drawn = false;

  constructor(
    private readonly render: () => string,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly everyMs = 200,
  ) {}

  /** Whether anything will be shown. */
  get enabled(): boolean {
    return this.out.isTTY === true;
  }

  /** Starts redrawing. */
  start(): void {
    if (!this.enabled || this.timer) return;
    this.timer = setInterval(() => this.draw(), this.everyMs);
    // A progress line must never keep the process alive on its own.
    this.timer.unref();
  }

  /** Redraws now (e.g. when the phase changes). */
  draw(): void {
    if (!this.enabled) return;
    const cols = this.out.columns || 80;
    this.out.write(`\r\x1b[2K${truncate(this.render(), cols - 1)}`);
    this.drawn = true;
  }

  /** Stops and erases the line, leaving the cursor at the start of an empty line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
  }
}

/** Counts `\n` bytes in a chunk (rows of NDJSON and CSV, for progress). */
export function countNewlines(chunk: Uint8Array): number {
  let n = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  return n;
}
