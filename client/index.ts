/**
 * dstore's client library: `import { Dstore } from 'dstore'`. See README, "The client".
 * @packageDocumentation
 */
export { Dstore, Indexes, Table } from './dstore';
export type {
  AggregateQuery,
  AlterResult,
  AlterTable,
  DstoreOptions,
  Page,
  Query,
  QueryOptions,
  Row,
  Rows,
} from './dstore';
export { DstoreError, isDstoreError } from './errors';
export { Transport, type RawBody } from './http';
export type {
  DeleteResult,
  ErrorBody,
  IndexList,
  IndexListing,
  InsertResult,
  OnConflict,
  TableInfo,
  TableStats,
  UpdateResult,
} from '../common/api';
export type { AggregateSpec, SortSpec } from '../common/query';
export type { ChangeEvent, ChangeOp, ChangeRetention } from '../common/changes';
