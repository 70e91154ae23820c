import * as net from 'node:net';
import * as tls from 'node:tls';
import type { CommonOptions } from './config';
import { ConfigError } from './errors';

/**
 * A start-time TLS check of a rediss:// Redis. ioredis treats a certificate it cannot
 * verify like any connection failure and retries forever, so a missing or wrong
 * REDIS_TLS_CA_FILE would show as a hang (a worker) or, half a minute later, as "Reached
 * the max retries per request limit" (a coordinator). A certificate problem does not go
 * away by retrying: this handshake finds it at once and names the setting to change.
 */

/** TLS errors that retrying will not cure: the certificate or the protocol is wrong. */
function isTlsProblem(code: string | undefined): boolean {
  if (!code) return false;
  return /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|^ERR_SSL_|^ERR_TLS_/.test(code);
}

/** Where a rediss:// Redis is: the first cluster seed, else the URL's host and port. Never its credentials. */
function target(opts: Pick<CommonOptions, 'redisUrl' | 'redisClusterNodes'>): { host: string; port: number } {
  const seed = opts.redisClusterNodes?.[0];
  if (seed) return seed;
  const u = new URL(opts.redisUrl);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) };
}

/**
 * Does one TLS handshake with the Redis of a rediss:// URL, as ioredis will (same CA, same
 * host name check). Resolves when it succeeds, and also when the server cannot be reached
 * at all (a Redis that is still starting is waited for as before); rejects with a
 * {@link ConfigError} naming REDIS_TLS_CA_FILE or REDIS_URL when the certificate cannot be
 * verified or the server does not speak TLS (accepts TCP but no handshake in `timeoutMs`). A plain redis:// URL is not checked.
 */
export function checkRedisTls(
  opts: Pick<CommonOptions, 'redisUrl' | 'redisClusterNodes' | 'redisTlsCa'>,
  timeoutMs = 10_000,
): Promise<void> {
  if (!opts.redisUrl.startsWith('rediss://')) return Promise.resolve();
  const { host, port } = target(opts);
  const where = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, ca: opts.redisTlsCa, servername: net.isIP(host) ? undefined : host });
    const done = (e?: Error) => {
      clearTimeout(timer);
      sock.destroy();
      if (e) reject(e);
      else resolve();
    };
    let connected = false;
    sock.once('connect', () => (connected = true));
    // Accepted over TCP but no TLS handshake: a plain Redis reads the ClientHello as the
    // start of a command and waits for the rest, so the handshake would hang for ever.
    const timer = setTimeout(
      () =>
        done(
          connected
            ? new ConfigError(
                'REDIS_URL',
                `is rediss:// but the server at ${where} accepted the connection and did not complete a TLS handshake within ${timeoutMs} ms; use redis:// for a plain Redis, or the server's TLS port`,
              )
            : undefined,
        ),
      timeoutMs,
    );
    sock.once('secureConnect', () => done());
    sock.once('error', (e: NodeJS.ErrnoException) => {
      if (!isTlsProblem(e.code)) return done();
      if (/^ERR_SSL_/.test(e.code ?? '')) {
        return done(
          new ConfigError(
            'REDIS_URL',
            `is rediss:// but the server at ${where} does not answer TLS (${e.code}); use redis:// for a plain Redis, or the server's TLS port`,
          ),
        );
      }
      const why = `${e.code}: ${e.message}`;
      done(
        opts.redisTlsCa
          ? new ConfigError(
              'REDIS_TLS_CA_FILE',
              `does not verify the TLS certificate of the Redis at ${where} (${why}); give the PEM of the CA that signed that server's certificate`,
            )
          : new ConfigError(
              'REDIS_URL',
              `the TLS certificate of the Redis at ${where} is not trusted by the system CAs (${why}); set REDIS_TLS_CA_FILE to the PEM of the CA that signed it`,
            ),
      );
    });
  });
}
