// The content store's contract, as containerd splits it: Provider, Ingester, Manager, IngestManager.
// Sizes and offsets are JS numbers (exact up to 2^53 bytes). Digests are "sha256:<hex>" strings.

export interface Info {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Record<string, string>;
}

export interface Status {
  ref: string;
  /** Bytes stored so far. */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Expected digest, "" when unknown. */
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

export interface WriterOptions {
  ref: string;
  /** Expected total size; 0 when unknown. */
  total?: number;
  /** Expected digest; "" when unknown. */
  expected?: string;
}

export interface Writer {
  readonly ref: string;
  status(): Promise<Status>;
  /** Digest of the bytes written so far. */
  digest(): string;
  /** Appends at the current offset; returns the new offset. */
  write(data: Uint8Array): Promise<number>;
  /** Drops all bytes written so far (a WRITE at offset 0 over existing data). */
  truncate(): Promise<void>;
  /**
   * Verifies size (when > 0) and digest (when non-empty), then makes the blob visible under its
   * digest atomically. Returns the committed digest. AlreadyExists when the blob is present.
   */
  commit(size: number, expected: string, labels?: Record<string, string>): Promise<string>;
  /** Releases the ref lock; the ingest stays on disk for resumption. */
  close(): Promise<void>;
}

export interface Provider {
  info(digest: string): Promise<Info>;
  /** Streams [offset, offset+length) of a committed blob; length <= 0 means to the end. */
  read(digest: string, offset: number, length: number): AsyncIterable<Uint8Array>;
}

export interface Ingester {
  /** Opens or resumes the ingest for ref. Unavailable when another writer holds the ref. */
  writer(opts: WriterOptions): Promise<Writer>;
}

export interface Manager {
  info(digest: string): Promise<Info>;
  /** fieldpaths: [] replaces all labels; "labels" or "labels.<k>" select what changes. */
  update(info: Pick<Info, "digest" | "labels">, fieldpaths: string[]): Promise<Info>;
  walk(fn: (info: Info) => void | Promise<void>, filters?: string[]): Promise<void>;
  delete(digest: string): Promise<void>;
}

export interface IngestManager {
  status(ref: string): Promise<Status>;
  listStatuses(filters?: string[]): Promise<Status[]>;
  abort(ref: string): Promise<void>;
}

export interface Store extends Provider, Ingester, Manager, IngestManager {}
