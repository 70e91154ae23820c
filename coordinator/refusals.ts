import type { PostAckMessage } from '../common/messages';
import { ApiError, badRequest, conflict, unavailable } from './errors';

/** What {@link refusalError} needs to know of the refused chunk. */
export interface RefusedChunk {
  /** Rows in the chunk. */
  rows: number;
  /** The request's row number of the chunk's first record, when known. */
  firstRow?: number;
}

/**
 * The error a POST fails with when a worker refuses one of its chunks, chosen by the ack's
 * `code`: `duplicate-id` → 409 naming the request row and the `_id` (the message keeps the
 * words "duplicate _id", which clients match), `bad-input` → 400 naming the request rows,
 * `aborted` and `storage` → 503 (nothing was stored; retry), `internal` (or no code) → 500.
 * The coordinator never reads the worker's text to decide: only the code.
 */
export function refusalError(
  ack: Pick<PostAckMessage, 'worker' | 'chunk' | 'error' | 'code' | 'row'>,
  chunk: RefusedChunk,
): ApiError {
  const cause = ack.error ?? 'no reason given';
  const { worker } = ack;
  const refused = `worker ${worker} refused chunk ${ack.chunk}: ${cause}`;
  // The request row at fault: the chunk's first row plus the worker's row within the chunk.
  const row = chunk.firstRow !== undefined && ack.row !== undefined ? chunk.firstRow + ack.row - 1 : undefined;
  switch (ack.code) {
    case 'duplicate-id':
      return conflict(
        `${row === undefined ? '' : `row ${row}: `}${cause}; nothing of this request was stored`,
        row === undefined ? { worker } : { worker, row, field: '_id' },
      );
    case 'bad-input': {
      const where =
        row !== undefined
          ? `row ${row}`
          : chunk.firstRow !== undefined
            ? `rows ${chunk.firstRow}-${chunk.firstRow + chunk.rows - 1}`
            : 'a chunk';
      const first = row ?? chunk.firstRow;
      return badRequest(
        `${where}: ${refused}; nothing of this request was stored; fix those records and send the request again`,
        first === undefined ? { worker } : { worker, row: first },
      );
    }
    case 'aborted':
      return unavailable(`${refused}; nothing of this request was stored, send it again`, { worker });
    case 'storage':
      return unavailable(
        `${refused}; nothing of this request was stored. The worker cannot write its shard: check its disk and log, then send the request again`,
        { worker },
      );
    case 'internal':
    case undefined:
      return new ApiError(
        500,
        'write_failed',
        `${refused}; nothing of this request was stored (a fault in the worker: see its log)`,
      );
  }
}
