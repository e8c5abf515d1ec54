// The namespaced snapshotter (containerd's metadata.snapshotter): every namespace sees its own key
// space per snapshotter, recorded in the metadata DB, while the backend (overlayfs, native) holds
// one flat key space of "<namespace>/<seq>/<key>". The records carry the parent chain, kind and
// labels; the backend owns the bytes. Snapshots joined to the request's lease, GC roots through
// labels, and removal of backend snapshots once the records are gone are handled here and in gc.ts.
import { setImmediate as nextTurn } from "node:timers/promises";
import type { RequestContext } from "../context.js";
import {
  alreadyExists,
  invalidArgument,
  notFound,
  BerthError,
  failedPrecondition,
} from "../../errdefs/errors.js";
import type { MetadataDB } from "./db.js";
import { ensureNamespace, metadataDurable } from "./db.js";
import { decodeStringMap, encodeStringMap, compactStringMap } from "./field-paths.js";
import { addLeaseResource, removeLeaseResource } from "./lease-resources.js";
import { quote, requireNamespace, validateLabelsOf, type StoreOptions } from "./store-support.js";
import { parseFilters } from "../filters/filter.js";
import { snapshotAdaptor } from "../filters/adaptors.js";
import type {
  SnapshotInfo,
  SnapshotKind,
  SnapshotOptions,
  Snapshotter,
  SnapshotUsage,
} from "../snapshots/snapshotter.js";
import type { Mount } from "../mount/mount-types.js";
import type { CollectionLock } from "./gc.js";

export type { SnapshotInfo, SnapshotKind };

const kindCode: Record<SnapshotKind, number> = { view: 1, active: 2, committed: 3 };
const kinds: Record<number, SnapshotKind> = { 1: "view", 2: "active", 3: "committed" };

/** Snapshot sequence numbers reserved per write of the stored counter (see nextSeq). */
export const seqBlock = 1000;

/** Labels under this prefix are also handed to the backend (containerd's inheritable labels). */
const backendLabelPrefix = "containerd.io/snapshot/";

interface SnapshotRow {
  key: string;
  backend_key: string;
  parent: string;
  kind: number;
  labels: string;
  created_at: number;
  updated_at: number;
}

const toInfo = (r: SnapshotRow): SnapshotInfo => ({
  name: r.key,
  parent: r.parent,
  kind: kinds[r.kind] ?? "active",
  labels: decodeStringMap(r.labels),
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
});

export interface NamespacedSnapshots {
  /** Names of the backends this layer serves. */
  readonly names: ReadonlySet<string>;
  /** The snapshotter `name` as seen from ctx's namespace; InvalidArgument for an unknown name. */
  forContext(ctx: RequestContext, name: string): Snapshotter;
  /** The backends, for GC. */
  readonly backends: ReadonlyMap<string, Snapshotter>;
  /** Settles once every backend removal started so far (after its Remove returned) has ended. */
  idle(): Promise<void>;
}

export interface NamespacedSnapshotsOptions extends StoreOptions {
  /** Shared by every mutation, held exclusively by GC (the same lock the content store uses). */
  lock: CollectionLock;
}

/** A FIFO mutex per snapshotter: backend calls sit between the DB checks and the DB write. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

function backendLabels(labels: Record<string, string> | undefined): Record<string, string> | undefined {
  if (labels === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (k.startsWith(backendLabelPrefix)) out[k] = v;
  return Object.keys(out).length > 0 ? out : undefined;
}

export function createNamespacedSnapshots(
  db: MetadataDB,
  backends: ReadonlyMap<string, Snapshotter>,
  opts: NamespacedSnapshotsOptions,
): NamespacedSnapshots {
  const now = () => (opts.now?.() ?? new Date()).getTime();
  const mutexes = new Map([...backends.keys()].map((n) => [n, new Mutex()]));
  /** Backend removals still under way after their Remove was answered, chained per snapshotter. */
  const removals = new Map<string, Promise<void>>();
  const columns = "key, backend_key, parent, kind, labels, created_at, updated_at";
  const getRow = db.prepare<[string, string, string], SnapshotRow>(
    `SELECT ${columns} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?`,
  );
  const allRows = db.prepare<[string, string], SnapshotRow>(
    `SELECT ${columns} FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key`,
  );
  const hasChild = db.prepare<[string, string, string], { one: number }>(
    "SELECT 1 AS one FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? LIMIT 1",
  );
  const insertRow = db.prepare(
    `INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, kind, labels, created_at, updated_at)
     VALUES (@namespace, @snapshotter, @key, @backendKey, @parent, @kind, @labels, @createdAt, @updatedAt)`,
  );
  const deleteRow = db.prepare("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?");
  const updateLabels = db.prepare(
    "UPDATE snapshots SET labels = ?, updated_at = ? WHERE namespace = ? AND snapshotter = ? AND key = ?",
  );
  // Backend keys carry a sequence number that is never handed out twice, even across a crash
  // between the backend call and the record (containerd uses bolt's NextSequence). It is reserved
  // in blocks: the stored value is the end of the block in use, and a restart goes on after it, so
  // only one snapshot in seqBlock costs a write of its own (numbers a crash skips are never used).
  const readSeq = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'snapshot_seq'");
  const storeSeq = db.prepare(
    "INSERT INTO meta (key, value) VALUES ('snapshot_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
  );
  let seq = 0;
  let reserved = 0;
  // A number is used (in a backend key) only once its block's reservation is durable.
  let reservation: Promise<void> = Promise.resolve();
  const nextSeq = async (): Promise<number> => {
    if (seq >= reserved) {
      // The new block is taken only once its write has committed: a failed write (SQLITE_BUSY)
      // must not leave numbers in use that no stored value covers.
      const [from, to] = db.transaction((): [number, number] => {
        const row = readSeq.get();
        const start = Math.max(seq, row ? Number(row.value) : 0);
        storeSeq.run(String(start + seqBlock));
        return [start, start + seqBlock];
      })();
      seq = from;
      reserved = to;
      reservation = metadataDurable(db);
    }
    const n = ++seq;
    await reservation;
    return n;
  };

  const forContext = (ctx: RequestContext, name: string): Snapshotter => {
    const backend = backends.get(name);
    if (backend === undefined) throw invalidArgument(`snapshotter not loaded: ${name}`);
    const mutex = mutexes.get(name) as Mutex;
    const leaseType = `snapshots/${name}`;
    const mutate = <T>(fn: () => Promise<T>): Promise<T> => opts.lock.shared(() => mutex.run(fn));
    const row = (ns: string, key: string): SnapshotRow => {
      const r = getRow.get(ns, name, key);
      if (r === undefined) throw notFound(`snapshot ${key} does not exist`);
      return r;
    };

    const create = (kind: "active" | "view", key: string, parent: string, o?: SnapshotOptions) => {
      const ns = requireNamespace(ctx);
      validateLabelsOf("info.Labels", o?.labels);
      if (key === "") throw invalidArgument("key must not be empty");
      return mutate(async (): Promise<Mount[]> => {
        if (getRow.get(ns, name, key) !== undefined) throw alreadyExists(`snapshot ${quote(key)}`);
        const bparent =
          parent === ""
            ? ""
            : ((): string => {
                const p = getRow.get(ns, name, parent);
                if (p === undefined) throw notFound(`parent snapshot ${parent} does not exist`);
                return p.backend_key;
              })();
        const backendKey = `${ns}/${await nextSeq()}/${key}`;
        const bopts = { labels: backendLabels(o?.labels) };
        const mounts =
          kind === "active"
            ? await backend.prepare(backendKey, bparent, bopts)
            : await backend.view(backendKey, bparent, bopts);
        const t = now();
        try {
          db.transaction(() => {
            ensureNamespace(db, ns, t);
            addLeaseResource(db, ctx, leaseType, key);
            insertRow.run({
              namespace: ns,
              snapshotter: name,
              key,
              backendKey,
              parent,
              kind: kindCode[kind],
              labels: encodeStringMap(compactStringMap(o?.labels)),
              createdAt: t,
              updatedAt: t,
            });
          })();
        } catch (err) {
          await backend.remove(backendKey).catch(() => undefined);
          throw err;
        }
        return mounts;
      });
    };

    return {
      async stat(key) {
        return toInfo(row(requireNamespace(ctx), key));
      },
      async update(info, fieldpaths = []) {
        const ns = requireNamespace(ctx);
        if (info.name === "") throw invalidArgument("");
        return mutate(async () => {
          const r = row(ns, info.name);
          let labels = decodeStringMap(r.labels);
          if (fieldpaths.length === 0) labels = { ...info.labels };
          for (const path of fieldpaths) {
            if (path.startsWith("labels.")) {
              const k = path.slice("labels.".length);
              const v = Object.hasOwn(info.labels, k) ? info.labels[k] : undefined;
              if (v === undefined || v === "") delete labels[k];
              else labels[k] = v;
            } else if (path === "labels") labels = { ...info.labels };
            else throw invalidArgument(`cannot update ${quote(path)} field on snapshot ${quote(info.name)}`);
          }
          labels = compactStringMap(labels);
          validateLabelsOf("info.Labels", labels);
          const t = now();
          updateLabels.run(encodeStringMap(labels), t, ns, name, info.name);
          opts.onMutation?.({ deletion: false });
          return { ...toInfo(r), labels, updatedAt: new Date(t) };
        });
      },
      async usage(key): Promise<SnapshotUsage> {
        return backend.usage(row(requireNamespace(ctx), key).backend_key);
      },
      async mounts(key) {
        return backend.mounts(row(requireNamespace(ctx), key).backend_key);
      },
      prepare: (key, parent, o) => create("active", key, parent, o),
      view: (key, parent, o) => create("view", key, parent, o),
      async commit(commitName, key, o) {
        const ns = requireNamespace(ctx);
        validateLabelsOf("info.Labels", o?.labels);
        await mutate(async () => {
          if (getRow.get(ns, name, commitName) !== undefined)
            throw alreadyExists(`snapshot ${quote(commitName)}`);
          const active = row(ns, key);
          const backendKey = `${ns}/${await nextSeq()}/${commitName}`;
          await backend.commit(backendKey, active.backend_key, { labels: backendLabels(o?.labels) });
          const t = now();
          db.transaction(() => {
            ensureNamespace(db, ns, t);
            addLeaseResource(db, ctx, leaseType, commitName);
            deleteRow.run(ns, name, key);
            removeLeaseResource(db, ctx, leaseType, key);
            insertRow.run({
              namespace: ns,
              snapshotter: name,
              key: commitName,
              backendKey,
              parent: active.parent,
              kind: kindCode.committed,
              labels: encodeStringMap(compactStringMap(o?.labels)),
              createdAt: t,
              updatedAt: t,
            });
          })();
          opts.onMutation?.({ deletion: false });
        });
      },
      async remove(key) {
        const ns = requireNamespace(ctx);
        await mutate(async () => {
          const r = row(ns, key);
          if (hasChild.get(ns, name, key) !== undefined)
            throw failedPrecondition("cannot remove snapshot with child");
          db.transaction(() => {
            deleteRow.run(ns, name, key);
            removeLeaseResource(db, ctx, leaseType, key);
          })();
          // The record must be gone for good before the backend's bytes are.
          await metadataDurable(db);
          // The snapshot is gone for every client now; its bytes go after the reply (containerd
          // leaves them to GC), one removal after another per snapshotter, so that a parent is
          // removed only after a child removed before it. The removal starts in a later turn:
          // begun now, its own commit would be one more sync for this reply to wait on. A GC that
          // runs first (it holds the lock exclusively) sweeps the backend snapshot itself, and
          // its backend sweep takes whatever a failed removal leaves.
          const backendKey = r.backend_key;
          const removal = (removals.get(name) ?? Promise.resolve())
            .then(() => nextTurn())
            .then(() => opts.lock.shared(() => backend.remove(backendKey)))
            .then(
              () => opts.onMutation?.({ deletion: true }),
              (err: unknown) => {
                if (!(err instanceof BerthError && err.code === "not-found"))
                  opts.onMutation?.({ deletion: true });
              },
            );
          removals.set(name, removal);
          void removal.then(() => {
            if (removals.get(name) === removal) removals.delete(name);
          });
        });
      },
      async walk(fn, filters = []) {
        const ns = requireNamespace(ctx);
        const filter = parseFilters(filters);
        for (const info of allRows.all(ns, name).map(toInfo))
          if (filter.match(snapshotAdaptor(info))) await fn(info);
      },
      async close() {
        // The backends are closed by their plugins.
      },
    };
  };

  return {
    names: new Set(backends.keys()),
    backends,
    forContext,
    async idle() {
      await Promise.all(removals.values());
    },
  };
}
