// The namespaced content store (containerd's metadata content store): per-namespace rows, labels and
// ingests in SQLite over one namespace-less backend; blobs leave the backend only through GC.
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  isCode,
  notFound,
} from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import type { Info, Status, Store, Writer, WriterOptions } from "../content/content.js";
import { validateDigest } from "../content/digest.js";
import { contentAdaptor, ingestAdaptor } from "../filters/adaptors.js";
import { parseFilters } from "../filters/filter.js";
import { applyLabelPaths, validateLabels } from "../labels/labels.js";
import { validateLabelsOf } from "./store-support.js";
import { ensureNamespace, parseLabels, type MetadataDB } from "./db.js";
import { CollectionLock } from "./gc.js";
import { addLeaseResource, leaseExists, removeLeaseResource } from "./lease-resources.js";

/** Unleased ingests are abandoned after a day, as in containerd. */
export const ingestExpiryMs = 24 * 60 * 60 * 1000;

/** What the namespaced store needs of its backend (the local store satisfies it). */
export interface ContentBackend {
  info(digest: string): Promise<Info>;
  read(digest: string, offset: number, length: number): AsyncIterable<Uint8Array>;
  writer(opts: WriterOptions): Promise<Writer>;
  status(ref: string): Promise<Status>;
  abort(ref: string): Promise<void>;
}

export interface NamespacedContentStoreOptions {
  /** "shared" (default): a blob any namespace has can be linked into another without its bytes. */
  sharingPolicy?: "shared" | "isolated";
  now?: () => number;
  /** Called after a content row is deleted, so the GC scheduler can collect the blob soon. */
  onDelete?: () => void;
  /** Called after a blob is committed into a namespace that did not have it (unpack-ahead). */
  onCommitted?: (namespace: string, digest: string, size: number) => void;
  /** Shared with collectGarbage (deps.lock); a private one is made when absent. */
  lock?: CollectionLock;
}

export interface NamespacedContentStore {
  /** The store as seen from ctx.namespace; resources created under ctx.lease join that lease. */
  forContext(ctx: RequestContext): Store;
  /** Whether namespace holds the blob (a committed row). */
  has(namespace: string, digest: string): boolean;
  /** The lock to hand to collectGarbage. */
  readonly lock: CollectionLock;
}

interface ContentRow {
  digest: string;
  size: number;
  labels: string;
  created_at: number;
  updated_at: number;
}

interface IngestRow {
  ref: string;
  backend_ref: string;
  expected: string;
  expires_at: number | null;
}

/**
 * The backend ingest key of (namespace, ref). Deterministic, so an interrupted upload resumes after
 * a restart; unique, because namespaces cannot contain "/".
 */
export function backendIngestRef(namespace: string, ref: string): string {
  return `${namespace}/${ref}`;
}

function rowToInfo(row: ContentRow): Info {
  return {
    digest: row.digest,
    size: row.size,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    labels: parseLabels(row.labels),
  };
}

export function createNamespacedContentStore(
  db: MetadataDB,
  backend: ContentBackend,
  opts: NamespacedContentStoreOptions = {},
): NamespacedContentStore {
  const shared = (opts.sharingPolicy ?? "shared") === "shared";
  const now = opts.now ?? Date.now;
  const lock = opts.lock ?? new CollectionLock();

  const q = {
    content: db.prepare(
      "SELECT digest, size, labels, created_at, updated_at FROM content WHERE namespace = ? AND digest = ?",
    ),
    contentAll: db.prepare(
      "SELECT digest, size, labels, created_at, updated_at FROM content WHERE namespace = ? ORDER BY digest",
    ),
    contentInsert: db.prepare(
      "INSERT INTO content (namespace, digest, size, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    contentLabels: db.prepare(
      "UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
    ),
    contentDelete: db.prepare("DELETE FROM content WHERE namespace = ? AND digest = ?"),
    ingest: db.prepare(
      "SELECT ref, backend_ref, expected, expires_at FROM ingests WHERE namespace = ? AND ref = ?",
    ),
    ingestAll: db.prepare(
      "SELECT ref, backend_ref, expected, expires_at FROM ingests WHERE namespace = ? ORDER BY ref",
    ),
    ingestUpsert: db.prepare(
      `INSERT INTO ingests (namespace, ref, backend_ref, expected, expires_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (namespace, ref) DO UPDATE SET expected = excluded.expected, expires_at = excluded.expires_at`,
    ),
    ingestUnshare: db.prepare("UPDATE ingests SET expected = '' WHERE namespace = ? AND ref = ?"),
    ingestDelete: db.prepare("DELETE FROM ingests WHERE namespace = ? AND ref = ?"),
  };

  const getContent = (ns: string, digest: string) => q.content.get(ns, digest) as ContentRow | undefined;
  const getIngest = (ns: string, ref: string) => q.ingest.get(ns, ref) as IngestRow | undefined;

  function requireNamespace(ctx: RequestContext): string {
    if (ctx.namespace === "") throw failedPrecondition("namespace is required");
    return ctx.namespace;
  }

  /** Fails before any backend work when the request names a lease that does not exist. */
  function checkLease(ctx: RequestContext): void {
    if (ctx.lease !== undefined && ctx.lease !== "" && !leaseExists(db, ctx.namespace, ctx.lease)) {
      throw notFound("lease does not exist");
    }
  }

  /** Status of a shared ingest: nothing to write, the blob is already in the backend. */
  async function sharedStatus(ref: string, expected: string): Promise<Status> {
    const info = await backend.info(expected);
    return {
      ref,
      offset: info.size,
      total: info.size,
      expected,
      startedAt: info.updatedAt,
      updatedAt: info.updatedAt,
    };
  }

  /**
   * Opens the backend writer under the namespaced ref. The backend refuses an expected digest it
   * already holds, but in this namespace (isolated policy, or a size that did not match) the bytes
   * must still be written, so then the expectation is left to the commit. Lock errors pass
   * through: like containerd's, they name the backend ref ("<namespace>/<ref>" here,
   * "<namespace>/<sequence>/<ref>" there).
   */
  async function openBackendWriter(backendRef: string, total: number, expected: string) {
    try {
      return await backend.writer({ ref: backendRef, total, expected });
    } catch (err) {
      if (expected === "" || !isCode(err, "already-exists")) throw err;
      return await backend.writer({ ref: backendRef, total, expected: "" });
    }
  }

  async function ingestStatus(ref: string, row: IngestRow): Promise<Status> {
    if (row.expected !== "") return sharedStatus(ref, row.expected);
    const st = await backend.status(row.backend_ref);
    return { ...st, ref };
  }

  function forContext(ctx: RequestContext): Store {
    const ns = requireNamespace(ctx);

    return {
      async info(digest: string): Promise<Info> {
        validateDigest(digest);
        const row = getContent(ns, digest);
        if (row === undefined) throw notFound(`content digest ${digest}`);
        return rowToInfo(row);
      },

      async update(info: Pick<Info, "digest" | "labels">, fieldpaths: string[]): Promise<Info> {
        validateDigest(info.digest);
        return db.transaction(() => {
          const row = getContent(ns, info.digest);
          if (row === undefined) throw notFound(`content digest ${info.digest}`);
          const { labels, unknown } = applyLabelPaths(parseLabels(row.labels), info.labels ?? {}, fieldpaths);
          const bad = unknown[0];
          if (bad !== undefined) {
            throw invalidArgument(
              `cannot update ${JSON.stringify(bad)} field on content info ${JSON.stringify(info.digest)}`,
            );
          }
          validateLabelsOf("info.Labels", labels, `writing labels for info ${info.digest}`);
          const updatedAt = now();
          const json = JSON.stringify(labels);
          q.contentLabels.run(json, updatedAt, ns, info.digest);
          return rowToInfo({ ...row, labels: json, updated_at: updatedAt });
        })();
      },

      async walk(fn: (info: Info) => void | Promise<void>, filters: string[] = []): Promise<void> {
        const filter = parseFilters(filters);
        // Read everything first so the callback never runs inside a DB read.
        const infos = (q.contentAll.all(ns) as ContentRow[])
          .map(rowToInfo)
          .filter((i) => filter.match(contentAdaptor(i)));
        for (const info of infos) await fn(info);
      },

      async delete(digest: string): Promise<void> {
        validateDigest(digest);
        db.transaction(() => {
          if (q.contentDelete.run(ns, digest).changes === 0) throw notFound(`content digest ${digest}`);
          removeLeaseResource(db, ctx, "content", digest);
        })();
        opts.onDelete?.();
      },

      read(digest: string, offset: number, length: number): AsyncIterable<Uint8Array> {
        return (async function* () {
          validateDigest(digest);
          if (getContent(ns, digest) === undefined) throw notFound(`content digest ${digest}`);
          yield* backend.read(digest, offset, length);
        })();
      },

      async writer(wopts: WriterOptions): Promise<Writer> {
        const ref = wopts.ref;
        if (typeof ref !== "string" || ref === "") throw invalidArgument("ref must not be empty");
        let total = wopts.total ?? 0;
        if (!Number.isSafeInteger(total) || total < 0) throw invalidArgument(`invalid total ${total}`);
        const expected = wopts.expected ?? "";
        if (expected !== "") validateDigest(expected);

        // Committed here already: lease it (so a concurrent delete under another reference cannot
        // take it from this lease's user) and report AlreadyExists, which clients treat as done.
        const leaseExisting = (): boolean =>
          db.transaction(() => {
            if (getContent(ns, expected) === undefined) return false;
            addLeaseResource(db, ctx, "content", expected);
            return true;
          })();

        return lock.shared(async () => {
          if (expected !== "" && leaseExisting()) throw alreadyExists(`content ${expected}`);

          let sharedBlob = false;
          if (shared && expected !== "") {
            try {
              const info = await backend.info(expected);
              // A size mismatch is likely an error, but it is the commit's to report.
              if (total === 0 || total === info.size) {
                sharedBlob = true;
                total = info.size;
              }
            } catch (err) {
              if (!isCode(err, "not-found")) throw err;
            }
          }

          const opened = db.transaction(() => {
            // Checked again: the namespace may have committed it while we asked the backend.
            if (expected !== "" && getContent(ns, expected) !== undefined) {
              addLeaseResource(db, ctx, "content", expected);
              return undefined;
            }
            const existing = getIngest(ns, ref);
            const backendRef = existing?.backend_ref ?? backendIngestRef(ns, ref);
            const leased = addLeaseResource(db, ctx, "ingests", ref);
            // Under a lease the ingest lives as long as the lease holds it; otherwise for a day.
            const expiresAt = leased ? (existing?.expires_at ?? null) : now() + ingestExpiryMs;
            q.ingestUpsert.run(ns, ref, backendRef, sharedBlob ? expected : "", expiresAt);
            ensureNamespace(db, ns, now());
            return { backendRef, created: existing === undefined };
          })();
          if (opened === undefined) throw alreadyExists(`content ${expected}`);

          let w: Writer | undefined;
          if (!sharedBlob) {
            try {
              w = await openBackendWriter(opened.backendRef, total, expected);
            } catch (err) {
              if (opened.created) {
                db.transaction(() => {
                  q.ingestDelete.run(ns, ref);
                  removeLeaseResource(db, ctx, "ingests", ref);
                })();
              }
              throw err;
            }
          }
          return new NamespacedWriter({
            ref,
            backendRef: opened.backendRef,
            w,
            shared: sharedBlob ? { expected, size: total, at: new Date(now()) } : undefined,
            commit: (digest, size, labels) => commitRow(ctx, ref, digest, size, labels),
            unshare: async () => {
              const bw = await openBackendWriter(opened.backendRef, total, expected);
              q.ingestUnshare.run(ns, ref);
              return bw;
            },
            backendBlobSize: async (digest) => (await backend.info(digest)).size,
            lock,
            checkLease: () => checkLease(ctx),
          });
        });
      },

      async status(ref: string): Promise<Status> {
        const row = getIngest(ns, ref);
        if (row === undefined) throw notFound(`reference ${ref}`);
        return ingestStatus(ref, row);
      },

      async listStatuses(filters: string[] = []): Promise<Status[]> {
        const filter = parseFilters(filters);
        const out: Status[] = [];
        for (const row of q.ingestAll.all(ns) as IngestRow[]) {
          if (!filter.match(ingestAdaptor({ ref: row.ref }))) continue;
          try {
            out.push(await ingestStatus(row.ref, row));
          } catch (err) {
            // A row whose backend data is gone (never opened, or lost in a crash) is not active.
            if (!isCode(err, "not-found")) throw err;
          }
        }
        return out;
      },

      async abort(ref: string): Promise<void> {
        await lock.shared(async () => {
          const row = getIngest(ns, ref);
          if (row === undefined) throw notFound(`reference ${ref}`);
          if (row.expected === "") {
            try {
              await backend.abort(row.backend_ref);
            } catch (err) {
              // Nothing was written yet (or it is already gone): dropping the row is all there is.
              if (!isCode(err, "not-found")) throw err;
            }
          }
          q.ingestDelete.run(ns, ref);
        });
      },
    };
  }

  /**
   * Records a committed blob in ctx's namespace: drops the ingest row, inserts the content row and
   * leases it, in one transaction. Returns true when the namespace already had it.
   */
  function commitRow(
    ctx: RequestContext,
    ref: string,
    digest: string,
    size: number,
    labels: Record<string, string>,
  ) {
    const ns = ctx.namespace;
    const existed = db.transaction(() => {
      q.ingestDelete.run(ns, ref);
      const existed = getContent(ns, digest) !== undefined;
      if (!existed) {
        const t = now();
        q.contentInsert.run(ns, digest, size, JSON.stringify(labels), t, t);
        ensureNamespace(db, ns, t);
      }
      addLeaseResource(db, ctx, "content", digest);
      return existed;
    })();
    if (!existed) opts.onCommitted?.(ns, digest, size);
    return existed;
  }

  const has = (namespace: string, digest: string): boolean => getContent(namespace, digest) !== undefined;

  return { forContext, has, lock };
}

interface NamespacedWriterInit {
  ref: string;
  backendRef: string;
  /** The backend writer; absent while the ingest is shared (the blob is already in the backend). */
  w: Writer | undefined;
  shared: { expected: string; size: number; at: Date } | undefined;
  commit: (digest: string, size: number, labels: Record<string, string>) => boolean;
  unshare: () => Promise<Writer>;
  backendBlobSize: (digest: string) => Promise<number>;
  lock: CollectionLock;
  checkLease: () => void;
}

/** A writer in one namespace: the backend writer under a namespaced ref, or a shared ingest. */
class NamespacedWriter implements Writer {
  readonly ref: string;
  #w: Writer | undefined;
  #shared: { expected: string; size: number; at: Date } | undefined;
  readonly #init: NamespacedWriterInit;
  // Calls run one at a time in call order, as the backend writer's do, so that an unshare started
  // by one call is finished before the next looks at the state.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(init: NamespacedWriterInit) {
    this.ref = init.ref;
    this.#w = init.w;
    this.#shared = init.shared;
    this.#init = init;
  }

  async status(): Promise<Status> {
    if (this.#w !== undefined) return { ...(await this.#w.status()), ref: this.ref };
    const s = this.#shared;
    if (s === undefined) throw failedPrecondition(`writer ${this.ref} is closed`);
    return {
      ref: this.ref,
      offset: s.size,
      total: s.size,
      expected: s.expected,
      startedAt: s.at,
      updatedAt: s.at,
    };
  }

  digest(): string {
    if (this.#w !== undefined) return this.#w.digest();
    return this.#shared?.expected ?? "";
  }

  write(data: Uint8Array): Promise<number> {
    return this.#serial(async () => {
      const s = this.#shared;
      if (this.#w === undefined && s !== undefined) {
        if (data.length === 0) return s.size;
        // The caller sends the bytes although the backend has them: it is uploading from the
        // start (containerd would append to a copy, which no caller that writes everything
        // wants). Clients that look at the offset (the Write RPC, content.Copy) never get here.
        await this.#unshare();
      }
      return this.#live().write(data);
    });
  }

  truncate(): Promise<void> {
    return this.#serial(async () => {
      if (this.#w === undefined && this.#shared !== undefined) {
        await this.#unshare();
        return;
      }
      await this.#live().truncate();
    });
  }

  commit(size: number, expected: string, labels: Record<string, string> = {}): Promise<string> {
    return this.#serial(async () => {
      validateLabels(labels);
      if (expected !== "") validateDigest(expected);
      return this.#init.lock.shared(async () => {
        this.#init.checkLease();
        let digest: string;
        let blobSize: number;
        const w = this.#w;
        const s = this.#shared;
        if (w !== undefined) {
          // containerd's metadata writer checks the size itself, before the backend does.
          const offset = (await w.status()).offset;
          if (size > 0 && size !== offset)
            throw failedPrecondition(
              `${JSON.stringify(this.ref)} failed size validation: ${offset} != ${size}`,
            );
          try {
            digest = await w.commit(size, expected);
          } catch (err) {
            // Another namespace (or an earlier writer) committed the same bytes: that is fine
            // here, it only matters whether this namespace already had them.
            if (!isCode(err, "already-exists")) throw err;
            digest = expected !== "" ? expected : w.digest();
          } finally {
            this.#w = undefined;
          }
          blobSize = await this.#init.backendBlobSize(digest);
        } else if (s !== undefined) {
          if (size !== 0 && size !== s.size) {
            throw failedPrecondition(`unexpected commit size ${s.size}, expected ${size}`);
          }
          if (expected !== "" && expected !== s.expected) {
            throw failedPrecondition(`unexpected commit digest ${s.expected}, expected ${expected}`);
          }
          digest = s.expected;
          blobSize = await this.#init.backendBlobSize(digest);
          this.#shared = undefined;
        } else {
          throw failedPrecondition(`cannot commit on closed writer ${this.ref}`);
        }
        if (this.#init.commit(digest, blobSize, labels)) throw alreadyExists(`content ${digest}`);
        return digest;
      });
    });
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      const w = this.#w;
      this.#w = undefined;
      this.#shared = undefined;
      await w?.close();
    });
  }

  async #unshare(): Promise<Writer> {
    const w = await this.#init.unshare();
    try {
      await w.truncate();
    } catch (err) {
      await w.close().catch(() => undefined);
      throw err;
    }
    this.#w = w;
    this.#shared = undefined;
    return w;
  }

  #live(): Writer {
    if (this.#w === undefined) throw failedPrecondition(`writer ${this.ref} is closed`);
    return this.#w;
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
