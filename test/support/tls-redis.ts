import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Redis from 'ioredis';
import { keepTemp, tailFile, tempDir } from './processes';
import { freePort } from './redis';

/** A TLS-only redis-server child (`--port 0 --tls-port N`) and the throwaway CA that signed its certificate. */
export interface TlsRedis {
  /** rediss://127.0.0.1:N */
  url: string;
  /** PEM file of the CA (for REDIS_TLS_CA_FILE). */
  caFile: string;
  /** A PEM file of another CA, which did not sign the server certificate. */
  otherCaFile: string;
  stop(): Promise<void>;
}

function openssl(dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(
      `openssl ${args[0]} failed (the TLS test needs the openssl CLI): ${err.stderr?.toString() || err.message}`,
    );
  }
}

/**
 * Makes a CA, a second unrelated CA, and a server certificate for 127.0.0.1/localhost signed by the first, in `dir`.
 */
function makeCertificates(dir: string): void {
  const days = ['-days', '2'];
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    ...days,
    '-subj',
    '/CN=dstore test CA',
  ]);
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'other-ca.key',
    '-out',
    'other-ca.pem',
    ...days,
    '-subj',
    '/CN=dstore other CA',
  ]);
  openssl(dir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    ...days,
    '-extfile',
    'ext.cnf',
  ]);
}

/**
 * Starts redis-server with TLS only (no plain port) on a free loopback port, with a fresh
 * CA and server certificate made by the openssl CLI, client certificates not required.
 * Resolves once it answers PING over TLS. The caller must stop it.
 */
export async function startTlsRedis(): Promise<TlsRedis> {
  const dir = tempDir('redis-tls');
  makeCertificates(dir);
  const port = await freePort();
  const logFile = path.join(dir, 'redis.log');
  const fd = fs.openSync(logFile, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--tls-cert-file',
        'server.pem',
        '--tls-key-file',
        'server.key',
        '--tls-ca-cert-file',
        'ca.pem',
        '--tls-auth-clients',
        'no',
      ],
      { cwd: dir, stdio: ['ignore', fd, fd] },
    );
  } finally {
    fs.closeSync(fd);
  }
  proc.on('error', (err) => fs.appendFileSync(logFile, `[harness] redis-server error: ${err.message}\n`));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const caFile = path.join(dir, 'ca.pem');
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    if (!keepTemp()) fs.rmSync(dir, { recursive: true, force: true });
  };
  const probe = new Redis(`rediss://127.0.0.1:${port}`, {
    tls: { ca: fs.readFileSync(caFile) },
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  probe.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  let last = '';
  try {
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        if (probe.status !== 'ready') await probe.connect();
        if ((await probe.ping()) === 'PONG')
          return { url: `rediss://127.0.0.1:${port}`, caFile, otherCaFile: path.join(dir, 'other-ca.pem'), stop };
      } catch (e) {
        last = (e as Error).message;
        probe.disconnect();
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.disconnect();
  }
  const log = tailFile(logFile, 20);
  await stop();
  throw new Error(
    `TLS redis-server on port ${port} did not answer PING over TLS (last: ${last}); its log ends with:\n${log}`,
  );
}
