/**
 * What the processes of a bench run use, read from /proc (Linux): CPU time per process over
 * a phase and peak RSS. The bench process itself (the client, or a baseline running in it)
 * is measured with process.cpuUsage(). Off Linux a process reads as unmeasured.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import Redis from 'ioredis';
import type { TestCluster } from '../test/support/cluster';
import type { TestRedis } from '../test/support/redis';

/** Where CPU times of other processes come from. */
export type CpuSource = 'schedstat' | 'stat' | 'none';

let source: CpuSource | undefined;
let hz: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 when that fails). */
export function clockTicks(): number {
  if (hz === undefined) {
    hz = 100;
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      if (Number.isInteger(n) && n > 0) hz = n;
    } catch {
      // no getconf: Linux's USER_HZ is 100 on every common architecture
    }
  }
  return hz;
}

/**
 * Nanoseconds on CPU summed over the live threads of `pid` (first field of each thread's
 * schedstat). Per thread because /proc/<pid>/schedstat counts the main thread only; a thread
 * that exits takes its time with it, which does not matter here: node's and Redis' threads
 * live as long as their process.
 */
function schedstatNs(pid: number): number | undefined {
  let threads: string[];
  try {
    threads = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let sum = 0;
  let read = false;
  for (const t of threads) {
    try {
      sum += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      read = true;
    } catch {
      // the thread exited between readdir and read
    }
  }
  return read ? sum : undefined;
}

/** utime + stime of `pid` (every thread, dead ones included) in ns; whole clock ticks only. */
function statNs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e9) / clockTicks();
  } catch {
    return undefined;
  }
}

/**
 * The source used: schedstat (ns) when the kernel keeps it (a kernel without scheduler
 * statistics reports 0 there, so this process' own figure decides), else stat (clock ticks).
 */
export function cpuSource(): CpuSource {
  if (source === undefined) {
    if ((schedstatNs(process.pid) ?? 0) > 0) source = 'schedstat';
    else if (statNs(process.pid) !== undefined) source = 'stat';
    else source = 'none';
  }
  return source;
}

/** CPU time (ns, user + system, all threads) process `pid` has used so far; undefined if unreadable. */
export function cpuNs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const s = cpuSource();
  return s === 'schedstat' ? schedstatNs(pid) : s === 'stat' ? statNs(pid) : undefined;
}

/** The processes of a dstore cluster that a phase is charged with, besides the client. */
export interface ClusterPids {
  coordinator: number | undefined;
  workers: (number | undefined)[];
  redis: number | undefined;
}

/** The pids of `cluster`'s coordinator and workers, with Redis' (see {@link redisPid}). */
export function clusterPids(cluster: TestCluster, redis: number | undefined): ClusterPids {
  return {
    coordinator: cluster.coordinator.pid,
    workers: [...cluster.workers.values()].map((w) => w.child.pid),
    redis,
  };
}

/** CPU (ns) each process used over one phase; undefined where it could not be read. */
export interface CpuUse {
  coordinator?: number;
  workers: (number | undefined)[];
  redis?: number;
  /** This process (process.cpuUsage()): the HTTP client, or the baseline itself. */
  client: number;
}

/** CPU per unit of work (µs per row or per operation), by process; `all` sums what was measured. */
export interface CpuPerUnit {
  coordinator?: number;
  workersSum?: number;
  workerMax?: number;
  redis?: number;
  client: number;
  all: number;
}

function selfNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

function delta(after: number | undefined, before: number | undefined): number | undefined {
  return after === undefined || before === undefined ? undefined : after - before;
}

/**
 * Runs `phase` and returns its value with the CPU each process used meanwhile: this process
 * always, and the cluster's processes when `pids` is given (none for a baseline, which runs
 * in this process).
 */
export async function withCpu<T>(
  pids: ClusterPids | undefined,
  phase: () => Promise<T> | T,
): Promise<{ value: T; cpu: CpuUse }> {
  const read = () => ({
    coordinator: cpuNs(pids?.coordinator),
    workers: (pids?.workers ?? []).map(cpuNs),
    redis: cpuNs(pids?.redis),
    client: selfNs(),
  });
  const before = read();
  const value = await phase();
  const after = read();
  return {
    value,
    cpu: {
      coordinator: delta(after.coordinator, before.coordinator),
      workers: after.workers.map((w, i) => delta(w, before.workers[i])),
      redis: delta(after.redis, before.redis),
      client: after.client - before.client,
    },
  };
}

/** `use` divided over `units` rows or operations, in µs each. */
export function perUnit(use: CpuUse, units: number): CpuPerUnit {
  const us = (ns: number | undefined) => (ns === undefined ? undefined : ns / 1000 / units);
  const workers = use.workers.map(us).filter((w): w is number => w !== undefined);
  const out: CpuPerUnit = {
    coordinator: us(use.coordinator),
    workersSum: workers.length ? workers.reduce((a, b) => a + b, 0) : undefined,
    workerMax: workers.length ? Math.max(...workers) : undefined,
    redis: us(use.redis),
    client: us(use.client)!,
    all: 0,
  };
  out.all = (out.coordinator ?? 0) + (out.workersSum ?? 0) + (out.redis ?? 0) + out.client;
  return out;
}

/**
 * The pid of the Redis server, for reading its CPU: the harness' own child, else what
 * `INFO server` says when that pid is a redis-server here (not one in a container's pid
 * namespace or on another host). Undefined when neither holds.
 */
export async function redisPid(redis: TestRedis): Promise<number | undefined> {
  if (redis.pid !== undefined) return redis.pid;
  const conn = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await conn.connect();
    const m = /process_id:(\d+)/.exec(await conn.info('server'));
    const pid = m ? Number(m[1]) : undefined;
    const comm = pid === undefined ? '' : fs.readFileSync(`/proc/${pid}/comm`, 'utf8');
    return comm.startsWith('redis-server') ? pid : undefined;
  } catch {
    return undefined;
  } finally {
    conn.disconnect();
  }
}

/** Peak resident set (VmHWM) of a process in MiB, from /proc; undefined off Linux or once it exited. */
export function peakRssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
