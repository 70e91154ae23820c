import type { FastifyInstance } from 'fastify';
import { Transform, type Readable } from 'node:stream';
import type { ApiDeps } from './deps';
import { ApiError, badRequest } from '../errors';
import { checkRecordShape } from '../limits';
import { formatOf, parseRecords } from '../record-parsers';
import type { CsvTypes } from '../schema';
import type { MutationResult } from '../mutations';
import type { InsertResult, OnConflict } from '../../common/api';

type Named = { Params: { name: string } };

/**
 * `POST /tables/:name/records` (streamed body), `PATCH` and `DELETE` of records by filter.
 * The POST route lives in its own plugin so that its content types reach the handler
 * as raw streams instead of being parsed whole.
 */
export function registerRecordRoutes(
  app: FastifyInstance,
  coord: Pick<ApiDeps, 'catalogue' | 'ingest' | 'metrics' | 'mutations' | 'opts'>,
): void {
  void app.register(async (sub) => {
    sub.removeAllContentTypeParsers();
    sub.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    sub.post<Named & { Querystring: { csvTypes?: string; onConflict?: string; ciphertextOf?: string } }>(
      '/tables/:name/records',
      async (req) => {
        try {
          return await postRecords(req);
        } catch (e) {
          // A client still uploading would otherwise see its connection reset, not the error.
          await discardRest(
            req.body as Readable,
            Math.min(coord.opts.bodyLimitBytes, DISCARD_MAX_BYTES),
            DISCARD_MAX_MS,
          );
          throw e;
        }
      },
    );
    const postRecords = async (req: {
      params: { name: string };
      query: { csvTypes?: string; onConflict?: string; ciphertextOf?: string };
      headers: Record<string, string | string[] | undefined>;
      body: unknown;
    }) => {
      const table = await coord.catalogue.require(req.params.name);
      // Checked against the route's schema (route-schemas.ts).
      const csvTypes = (req.query.csvTypes ?? 'infer') as CsvTypes;
      const onConflict = (req.query.onConflict ?? 'error') as OnConflict;
      const format = formatOf(req.headers['content-type'] as string | undefined);
      if (!format) {
        throw new ApiError(
          415,
          'unsupported_media_type',
          `Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')} is not one of application/x-ndjson, application/json, text/csv`,
        );
      }
      const counted = { bytes: 0 };
      const body = limitBytes(req.body as Readable, coord.opts.bodyLimitBytes, counted);
      const result = await coord.ingest.post(
        table,
        parseRecords(body, format, table.schema, coord.opts.maxRecordBytes, csvTypes),
        onConflict,
        req.query.ciphertextOf,
      );
      coord.metrics.ingested(result.inserted + result.updated, counted.bytes);
      const { updated, ...rest } = result;
      const answer: InsertResult = {
        ...rest,
        ...(onConflict === 'replace' ? { replaced: updated } : onConflict === 'merge' ? { merged: updated } : {}),
      };
      return answer;
    };
  });
  app.patch<Named & { Body: { where?: unknown; set?: unknown } | undefined }>('/tables/:name/records', async (req) => {
    const table = await coord.catalogue.require(req.params.name);
    if (!req.body) throw badRequest('body must be JSON {where, set}');
    const set = req.body.set;
    if (set && typeof set === 'object' && !Array.isArray(set))
      checkRecordShape(set as Record<string, unknown>, coord.opts);
    const r = await coord.mutations.update(table, req.body.where, req.body.set);
    return { updated: r.count, ...pending(r) };
  });
  app.delete<Named & { Body: { where?: unknown } | undefined }>('/tables/:name/records', async (req) => {
    const table = await coord.catalogue.require(req.params.name);
    if (!req.body) throw badRequest('body must be JSON {where}; use {"where": {}} to delete every row');
    const r = await coord.mutations.delete(table, req.body.where);
    return { deleted: r.count, ...pending(r) };
  });
}

/** Most of a refused request body read and thrown away so that its client gets the answer. */
const DISCARD_MAX_BYTES = 256 * 1024 * 1024;
const DISCARD_MAX_MS = 30_000;

/**
 * Reads and discards what is left of a request body, up to `maxBytes` or `ms`: an HTTP
 * client that is still sending (most do not read the answer before their upload is done)
 * would otherwise see its connection reset instead of the 4xx or 503 that explains why.
 */
async function discardRest(body: Readable, maxBytes: number, ms: number): Promise<void> {
  if (body.readableEnded || body.destroyed) return;
  body.unpipe();
  let n = 0;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      body.off('data', onData);
      body.off('end', done);
      body.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      if ((n += chunk.length) > maxBytes) done();
    };
    const timer = setTimeout(done, ms);
    body.on('data', onData);
    body.once('end', done);
    body.once('error', done);
    body.resume();
  });
}

/** Passes a stream through, counting its bytes, failing it with a 413 once it exceeds `limit` bytes. */
function limitBytes(body: Readable, limit: number, counted: { bytes: number }): Readable {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      counted.bytes += chunk.length;
      if (counted.bytes > limit)
        cb(
          new ApiError(
            413,
            'too_large',
            `request body is over DSTORE_BODY_LIMIT_BYTES (${limit} bytes); split the file`,
            { limit: 'DSTORE_BODY_LIMIT_BYTES' },
          ),
        );
      else cb(null, chunk);
    },
  });
  body.on('error', (e) => t.destroy(e));
  return body.pipe(t);
}

/** `pendingWorkers` only when some worker has the change queued but not applied yet. */
function pending(r: MutationResult): { pendingWorkers?: string[] } {
  return r.pendingWorkers.length > 0 ? { pendingWorkers: r.pendingWorkers } : {};
}
