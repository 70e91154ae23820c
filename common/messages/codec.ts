import 'reflect-metadata';
import { validateSync, type ValidationError } from 'class-validator';
import { MessageError } from '../errors';
import { cacheValidationMetadata } from './validation-cache';

cacheValidationMetadata();

/** Flat field/value pairs of one stream entry (or the JSON object of a pub/sub message). */
export type Fields = Record<string, string>;

/**
 * How a property is written into a string field. `lines`: an array, one item a line, each
 * checked for line breaks; `text`: lines already joined by the producer and passed through
 * as one string (rows that are JSON text, which holds no raw line break by construction).
 */
export type FieldKind = 'string' | 'int' | 'bool' | 'list' | 'lines' | 'text' | 'json';

/** Largest field value accepted from Redis before validation even starts (64 MiB). */
const MAX_FIELD_BYTES = 64 * 1024 * 1024;

/**
 * Base of every message: subclasses declare `static readonly codec` (property → kind)
 * and class-validator decorators on their properties.
 */
export abstract class Message {
  abstract readonly type: string;

  /** Flat string fields, readable in redis-cli / RedisInsight (`type` first). */
  encode(): Fields {
    const codec = (this.constructor as MessageClass<Message>).codec;
    const out: Fields = { type: this.type };
    for (const [prop, kind] of Object.entries(codec)) {
      const v = (this as unknown as Record<string, unknown>)[prop];
      if (v === undefined || v === null) continue;
      out[prop] = encodeValue(kind, v, prop, this.type);
    }
    return out;
  }

  /** The fields as an XADD argument list. */
  toArgs(): string[] {
    return Object.entries(this.encode()).flat();
  }
}

/** A concrete message class. */
export interface MessageClass<T extends Message> {
  new (): T;
  readonly type: string;
  readonly codec: Readonly<Record<string, FieldKind>>;
}

function encodeValue(kind: FieldKind, v: unknown, field: string, type: string): string {
  switch (kind) {
    case 'string':
      return String(v);
    case 'int':
      return String(v);
    case 'bool':
      return v ? '1' : '0';
    case 'list':
      return (v as string[]).join(',');
    case 'lines':
      return joinLines(v as string[], field, type);
    case 'text':
      return v as string;
    case 'json':
      return JSON.stringify(v);
  }
}

/**
 * A `lines` field: its items one a line. An item holding a line break would be read back
 * as several items (a chunk of N rows arriving as 10×N), so it is refused here, where the
 * producer's bug is, instead of corrupting the message for its reader.
 */
function joinLines(items: string[], field: string, type: string): string {
  for (let i = 0; i < items.length; i++) {
    const s = items[i];
    const lf = s.indexOf('\n');
    const cr = s.indexOf('\r');
    if (lf !== -1 || cr !== -1) {
      // Where, not what: an item may be row data, which no log line above debug may hold.
      const at = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      throw new MessageError(
        `${type}.${field}: item ${i + 1} of ${items.length} holds a line break (at character ${at + 1}); a lines field carries one item a line, so serialise each item on one line (e.g. with JSON.stringify)`,
        type,
      );
    }
  }
  return items.join('\n');
}

function decodeValue(kind: FieldKind, raw: string, field: string, type: string): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'int':
      if (!/^-?\d{1,16}$/.test(raw))
        throw new MessageError(`${type}.${field}: expected an integer, got ${clip(raw)}`, type);
      return Number(raw);
    case 'bool':
      if (raw !== '0' && raw !== '1')
        throw new MessageError(`${type}.${field}: expected 0 or 1, got ${clip(raw)}`, type);
      return raw === '1';
    case 'list':
      return raw === '' ? [] : raw.split(',');
    case 'lines':
      return raw === '' ? [] : raw.split('\n');
    case 'text':
      return raw;
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        throw new MessageError(`${type}.${field}: not valid JSON: ${clip(raw)}`, type);
      }
  }
}

function clip(s: string, n = 60): string {
  return JSON.stringify(s.length > n ? s.slice(0, n) + '…' : s);
}

function describe(errors: ValidationError[], parent = ''): string[] {
  return errors.flatMap((e) => {
    const at = parent ? `${parent}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((m) => `${at}: ${m}`);
    return [...own, ...describe(e.children ?? [], at)];
  });
}

/** Turns ioredis' `[field, value, field, value, …]` into an object (last one wins). */
export function fieldsFromArray(arr: string[]): Fields {
  const out: Fields = {};
  for (let i = 0; i + 1 < arr.length; i += 2) out[arr[i]] = arr[i + 1];
  return out;
}

/**
 * Decodes and validates one message of a known class. Throws {@link MessageError}
 * naming every field at fault; never returns a half-valid message.
 */
export function decodeAs<T extends Message>(cls: MessageClass<T>, fields: Fields): T {
  if (fields.type !== cls.type)
    throw new MessageError(`expected a ${cls.type} message, got type ${clip(String(fields.type))}`, fields.type);
  const msg = new cls();
  for (const [prop, kind] of Object.entries(cls.codec)) {
    const raw = fields[prop];
    if (raw === undefined) continue;
    if (typeof raw !== 'string') throw new MessageError(`${cls.type}.${prop}: expected a string field`, cls.type);
    if (raw.length > MAX_FIELD_BYTES)
      throw new MessageError(`${cls.type}.${prop}: field of ${raw.length} bytes is over the 64 MiB limit`, cls.type);
    (msg as unknown as Record<string, unknown>)[prop] = decodeValue(kind, raw, prop, cls.type);
  }
  const errors = validateSync(msg, { forbidUnknownValues: true, validationError: { target: false, value: false } });
  if (errors.length > 0) throw new MessageError(`invalid ${cls.type}: ${describe(errors).join('; ')}`, cls.type);
  return msg;
}

/**
 * Decodes an entry whose class is chosen by its `type` field among `classes`.
 * An unknown or missing type is a {@link MessageError}.
 */
export function decodeOneOf<T extends Message>(classes: readonly MessageClass<T>[], fields: Fields): T {
  const cls = classes.find((c) => c.type === fields.type);
  if (!cls) {
    const names = classes.map((c) => c.type).join(', ');
    throw new MessageError(
      `unknown message type ${clip(String(fields.type ?? '(none)'))}; expected one of ${names}`,
      fields.type,
    );
  }
  return decodeAs(cls, fields);
}

/** What a producer gives {@link build}: the message's own fields. */
export type MessageProps<T extends Message> = Omit<T, 'type' | 'encode' | 'toArgs'>;

function withProps<T extends Message>(cls: MessageClass<T>, props: MessageProps<T>): T {
  const msg = new cls();
  return Object.assign(msg, props);
}

/** Assigns `props` onto a fresh message and validates it: the way producers build messages. */
export function build<T extends Message>(cls: MessageClass<T>, props: MessageProps<T>): T {
  const msg = withProps(cls, props);
  check(cls, msg);
  return msg;
}

/**
 * As {@link build}, for the messages that carry rows (a chunk's POST, a FETCH_RESP batch):
 * every field is validated, but of a `lines` field only its first item, as a sample. Checking
 * each of a thousand rows cost more than writing them (0.35 µs a row); the receiver's decode
 * checks them all anyway, and encoding refuses a line break inside a row whatever happens.
 */
export function buildRows<T extends Message>(cls: MessageClass<T>, props: MessageProps<T>): T {
  const msg = withProps(cls, props);
  const sample = withProps(cls, props) as unknown as Record<string, unknown>;
  for (const [prop, kind] of Object.entries(cls.codec)) {
    const v = sample[prop];
    if (kind === 'lines' && Array.isArray(v)) sample[prop] = v.slice(0, 1);
  }
  check(cls, sample as unknown as T);
  return msg;
}

function check<T extends Message>(cls: MessageClass<T>, msg: T): void {
  const errors = validateSync(msg, { forbidUnknownValues: true, validationError: { target: false, value: false } });
  if (errors.length > 0) throw new MessageError(`invalid ${cls.type}: ${describe(errors).join('; ')}`, cls.type);
}

/** Longest `error` text a reply carries (the replies' `@MaxLength`). */
export const MAX_ERROR_TEXT = 2000;

/** An error text cut to fit a reply, marked when cut. */
export function errorText(message: string | undefined): string | undefined {
  if (message === undefined || message.length <= MAX_ERROR_TEXT) return message;
  return message.slice(0, MAX_ERROR_TEXT - 1) + '…';
}
