import { applyDecorators } from './decorators';
import { ArrayMaxSize, IsArray, IsString, Matches, MaxLength, ValidateBy } from 'class-validator';
import { ID_PATTERN, NAME_PATTERN } from '../names';

/** A generated id: chunk, op or request. */
export const IsId = () =>
  applyDecorators(IsString(), Matches(ID_PATTERN, { message: '$property must be 1-80 letters, digits, "_" or "-"' }));

/** A table name or a process id. */
export const IsName = () =>
  applyDecorators(
    IsString(),
    Matches(NAME_PATTERN, { message: '$property must be 1-64 letters, digits, "_", "." or "-"' }),
  );

/** A Redis stream key to reply on. */
export const IsStreamKey = () =>
  applyDecorators(
    IsString(),
    MaxLength(300),
    Matches(/^[A-Za-z0-9_{}.:-]+$/, { message: '$property must be a Redis key of letters, digits and _{}.:-' }),
  );

/** A list of worker ids (replica or live sets). */
export const IsWorkerList = (max = 4096) =>
  applyDecorators(
    IsArray(),
    ArrayMaxSize(max),
    Matches(NAME_PATTERN, { each: true, message: 'each of $property must be a worker id' }),
  );

/**
 * A list of generated ids (chunk ids: a FETCH and its answer name hundreds). One check over
 * the whole array: class-validator's per-item (`each`) rules cost ~1 µs an item, which at
 * 1,000 chunks was a visible share of a read.
 */
export const IsIdList = () =>
  ValidateBy({
    name: 'isIdList',
    validator: {
      validate: (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string' && ID_PATTERN.test(x)),
      defaultMessage: () => '$property must be an array of ids (1-80 letters, digits, "_" or "-")',
    },
  });
