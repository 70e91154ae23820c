import Database from 'better-sqlite3';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** What one build runs: `CREATE INDEX IF NOT EXISTS …` on the shard file. */
interface BuildJob {
  file: string;
  sql: string;
  sync: 'FULL' | 'NORMAL';
  /** Testing only: how long the build holds the write lock before it runs. */
  delayMs: number;
}

/**
 * Runs `sql` (one CREATE INDEX) on its own connection in a worker thread, so the worker's event
 * loop stays free while SQLite builds: reads go on from their own connections (WAL), and the
 * ops consumer applies nothing until the build is done (the build holds the write lock).
 * Resolves with undefined when built, or with SQLite's error message.
 */
export function buildIndex(
  file: string,
  sql: string,
  sync: 'FULL' | 'NORMAL',
  delayMs = 0,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const job: BuildJob = { file, sql, sync, delayMs };
    const w = new Worker(path.join(__dirname, 'index-builder.js'), { workerData: job });
    let settled = false;
    const done = (error: string | undefined) => {
      if (settled) return;
      settled = true;
      resolve(error);
    };
    w.on('message', (m: { error?: string }) => done(m.error));
    w.on('error', (e) => done(e.message));
    w.on('exit', (code) => done(code === 0 ? undefined : `the index build thread exited with code ${code}`));
  });
}

if (!isMainThread && parentPort) {
  const job = workerData as BuildJob;
  let error: string | undefined;
  try {
    const db = new Database(job.file);
    try {
      db.pragma(`synchronous = ${job.sync}`);
      db.pragma('busy_timeout = 60000');
      if (job.delayMs > 0) {
        db.exec('BEGIN IMMEDIATE');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, job.delayMs);
        db.exec(job.sql);
        db.exec('COMMIT');
      } else db.exec(job.sql);
    } finally {
      db.close();
    }
  } catch (e) {
    error = (e as Error).message.slice(0, 500);
  }
  parentPort.postMessage({ error });
}
