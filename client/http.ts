import { DstoreError } from './errors';

/** A raw request body with its Content-Type (a file or a stream of NDJSON, CSV, …). */
export interface RawBody {
  contentType: string;
  body: string | ReadableStream<Uint8Array>;
}

/** Network errors that mean nothing is listening (or reachable) at the URL. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function causeCodes(e: unknown): string[] {
  const cause = (e as { cause?: { code?: string; errors?: { code?: string }[] } })?.cause;
  if (!cause) return [];
  return [cause.code, ...(cause.errors ?? []).map((x) => x.code)].filter((c): c is string => typeof c === 'string');
}

/**
 * HTTP to one coordinator: JSON requests, streamed request bodies and streamed NDJSON answers
 * (Node's `fetch`). Every failure is a {@link DstoreError} (made by {@link fail}, which the CLI
 * overrides to word it in its flags) carrying the server's status, code and details.
 */
export class Transport {
  constructor(
    /** Base URL without a trailing slash, e.g. `http://127.0.0.1:7070`. */
    readonly baseUrl: string,
    /** Secret sent as `Authorization: Bearer`; never printed. */
    protected readonly token?: string,
  ) {}

  /**
   * Sends a request and returns its parsed JSON answer. `body` is sent as JSON unless it is a
   * {@link RawBody}. Throws a {@link DstoreError} with the server's message on a non-2xx.
   */
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw this.fail(
        `unexpected answer from the coordinator at ${this.baseUrl} to ${method} ${path} (not JSON): ${excerpt(text)}`,
        res.status,
      );
    }
  }

  /**
   * Sends `body` as JSON (POST, or `method`) and yields the lines of the NDJSON answer in
   * batches, one batch per network read, so a caller can write a batch at once without
   * waiting for more. Empty lines are skipped. Breaking out of the loop cancels the response.
   */
  async *streamLineBatches(path: string, body: unknown, method = 'POST'): AsyncGenerator<string[]> {
    const res = await this.send(method, path, body);
    if (!res.body) return;
    const decoder = new TextDecoder();
    let rest = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      const text = rest + decoder.decode(chunk, { stream: true });
      const parts = text.split('\n');
      rest = parts.pop()!;
      const lines = parts.map(stripCr).filter((l) => l !== '');
      if (lines.length > 0) yield lines;
    }
    rest = stripCr(rest + decoder.decode());
    if (rest !== '') yield [rest];
  }

  /** POSTs `body` as JSON and yields the lines of the NDJSON answer one by one. */
  async *streamLines(path: string, body: unknown): AsyncGenerator<string> {
    for await (const batch of this.streamLineBatches(path, body)) yield* batch;
  }

  /**
   * The error to throw: a {@link DstoreError}. `status`, `code`, `details` and the message are
   * the server's when it answered.
   */
  protected fail(message: string, status?: number, code?: string, details?: Record<string, unknown>): DstoreError {
    return new DstoreError(message, status, code, details);
  }

  /** Sends a request and returns the 2xx response; anything else becomes an error. */
  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    const url = this.baseUrl + path;
    const init: RequestInit & { duplex?: 'half' } = {
      method,
      headers: {
        accept: 'application/json, application/x-ndjson',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
    };
    if (isRawBody(body)) {
      init.headers = { ...init.headers, 'content-type': body.contentType };
      init.body = body.body;
      // A stream body needs half duplex: the answer may only be read once it is sent.
      if (typeof body.body !== 'string') init.duplex = 'half';
    } else if (body !== undefined) {
      // Sent only with a body: Fastify rejects an empty body declared as JSON.
      init.headers = { ...init.headers, 'content-type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw this.networkError(e);
    }
    if (!res.ok) throw await this.httpError(method, path, res);
    return res;
  }

  private networkError(e: unknown): Error {
    // A request body that failed to read (e.g. the input file) is the real cause.
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof DstoreError) return cause;
    if (causeCodes(e).some((c) => UNREACHABLE.has(c))) {
      return this.fail(`cannot reach the coordinator at ${this.baseUrl} (is it running? start one with dstore up)`);
    }
    const detail = cause instanceof Error ? cause.message : (e as Error).message;
    return this.fail(`request to the coordinator at ${this.baseUrl} failed: ${detail}`);
  }

  private async httpError(method: string, path: string, res: Response): Promise<DstoreError> {
    const text = await res.text().catch(() => '');
    try {
      const { error, message, ...details } = JSON.parse(text) as { error?: unknown; message?: unknown };
      if (typeof message === 'string' && message !== '')
        return this.fail(message, res.status, typeof error === 'string' ? error : undefined, details);
    } catch {
      // not JSON: a proxy or something that is not a coordinator answered
    }
    const what = `${method} ${path} failed with HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
    return this.fail(text.trim() ? `${what}: ${excerpt(text)}` : what, res.status);
  }
}

function isRawBody(b: unknown): b is RawBody {
  return typeof b === 'object' && b !== null && typeof (b as RawBody).contentType === 'string' && 'body' in b;
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

function excerpt(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? one.slice(0, 200) + '…' : one;
}

/** `/tables/NAME` plus `suffix`, with the name escaped. */
export function tablePath(name: string, suffix = ''): string {
  return `/tables/${encodeURIComponent(name)}${suffix}`;
}
