// Garbage collection over the metadata DB (containerd's metadata GC): a mark phase from the roots of
// every namespace, a sweep of unreachable rows in one transaction, then backend blob/ingest/snapshot removal.
import { performance } from "node:perf_hooks";
import { isCode } from "../../errdefs/errors.js";
import { metadataDurable, parseLabels, type MetadataDB } from "./db.js";

/** The labels GC reads (containerd 1.6). */
export const gcLabels = {
  root: "containerd.io/gc.root",
  contentRef: "containerd.io/gc.ref.content",
  snapshotRef: "containerd.io/gc.ref.snapshot.",
  expire: "containerd.io/gc.expire",
  flat: "containerd.io/gc.flat",
} as const;

export interface GcStats {
  durationMs: number;
  /** Content rows removed (one per namespace and digest). */
  contentRemoved: number;
  ingestsRemoved: number;
  snapshotsRemoved: number;
  leasesRemoved: number;
  /** Blob files removed from the backend, i.e. digests no namespace references any more. */
  blobsRemoved: number;
  /** Backend ingests aborted because no ingest row refers to them (left over by a crash). */
  orphanIngestsAborted: number;
  /** Backend failures after the metadata commit; GC went on, the next run retries what it can. */
  errors: string[];
}

/** The namespace-less content backend as GC needs it (the local store satisfies it). */
export interface GcContentBackend {
  delete(digest: string): Promise<void>;
  walk(fn: (info: { digest: string }) => void | Promise<void>): Promise<void>;
  abort(ref: string): Promise<void>;
  /** When present, backend ingests that no ingest row refers to are aborted too. */
  listStatuses?(): Promise<Array<{ ref: string }>>;
}

export interface GcSnapshotter {
  /** Removes the snapshot the metadata layer knew under backendKey. */
  remove(backendKey: string): Promise<void>;
  /**
   * When present, every backend snapshot is visited and those no record refers to (left by a
   * crash between a backend call and its record, or by a failed removal) are removed too.
   */
  walk?(fn: (info: { name: string; parent: string }) => void | Promise<void>): Promise<void>;
}

export interface GcDeps {
  contentBackend: GcContentBackend;
  /** Backend snapshotters by name; removed snapshot rows of unknown snapshotters are only dropped. */
  snapshotters?: Map<string, GcSnapshotter>;
  now?: () => number;
  /**
   * Held exclusively for the whole collection. Pass the one the namespaced content store uses, so
   * that no writer sits between its backend commit and its metadata insert while blobs are swept.
   */
  lock?: CollectionLock;
}

/**
 * A fair (FIFO) shared/exclusive async lock. Content writers take it shared around the steps that
 * touch both the backend and the DB; GC takes it exclusively, so it never sees a blob that is
 * committed in the backend but not yet recorded, nor resurrects an ingest it is aborting.
 */
export class CollectionLock {
  #readers = 0;
  #writer = false;
  readonly #waiting: Array<{ exclusive: boolean; wake: () => void }> = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#release(false);
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#release(true);
    }
  }

  #canGrant(exclusive: boolean): boolean {
    return exclusive ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #grant(exclusive: boolean): void {
    if (exclusive) this.#writer = true;
    else this.#readers++;
  }

  #acquire(exclusive: boolean): Promise<void> {
    // Queue behind earlier waiters even when grantable, so a waiting GC is not starved by readers.
    if (this.#waiting.length === 0 && this.#canGrant(exclusive)) {
      this.#grant(exclusive);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push({ exclusive, wake: resolve }));
  }

  #release(exclusive: boolean): void {
    if (exclusive) this.#writer = false;
    else this.#readers--;
    for (
      let next = this.#waiting[0];
      next !== undefined && this.#canGrant(next.exclusive);
      next = this.#waiting[0]
    ) {
      this.#waiting.shift();
      this.#grant(next.exclusive);
      next.wake();
    }
  }
}

type Labels = Record<string, string>;

type GcNode =
  | { kind: "content"; ns: string; digest: string }
  | { kind: "snapshot"; ns: string; snapshotter: string; key: string }
  | { kind: "ingest"; ns: string; ref: string };

const nodeKey = (n: GcNode): string =>
  n.kind === "content"
    ? JSON.stringify(["c", n.ns, n.digest])
    : n.kind === "snapshot"
      ? JSON.stringify(["s", n.ns, n.snapshotter, n.key])
      : JSON.stringify(["i", n.ns, n.ref]);

const contentNode = (ns: string, digest: string): GcNode => ({ kind: "content", ns, digest });
const snapshotNode = (ns: string, snapshotter: string, key: string): GcNode => ({
  kind: "snapshot",
  ns,
  snapshotter,
  key,
});
const ingestNode = (ns: string, ref: string): GcNode => ({ kind: "ingest", ns, ref });

/**
 * The reference edges a label set carries: containerd.io/gc.ref.content[(.|/)<name>] to content,
 * containerd.io/gc.ref.snapshot.<snapshotter>[/<name>] to a snapshot of that snapshotter.
 */
export function labelReferences(ns: string, labels: Labels, emit: (n: GcNode) => void): void {
  for (const [k, v] of Object.entries(labels)) {
    if (v === "") continue;
    if (k.startsWith(gcLabels.contentRef)) {
      const sep = k.charAt(gcLabels.contentRef.length);
      if (sep === "" || sep === "." || sep === "/") emit(contentNode(ns, v));
    } else if (k.startsWith(gcLabels.snapshotRef)) {
      const rest = k.slice(gcLabels.snapshotRef.length);
      const slash = rest.indexOf("/");
      const snapshotter = slash >= 0 ? rest.slice(0, slash) : rest;
      if (snapshotter !== "") emit(snapshotNode(ns, snapshotter, v));
    }
  }
}

/** Milliseconds of an RFC 3339 time, or undefined when the value is not one (then it is ignored). */
export function parseRfc3339(value: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
  const ms = Date.parse(value.toUpperCase());
  return Number.isNaN(ms) ? undefined : ms;
}

interface SnapshotRow {
  namespace: string;
  snapshotter: string;
  key: string;
  backend_key: string;
  parent: string;
  labels: string;
}

interface IngestRow {
  namespace: string;
  ref: string;
  backend_ref: string;
  expected: string;
  expires_at: number | null;
}

interface SweepResult {
  contentRemoved: number;
  ingestsRemoved: number;
  leasesRemoved: number;
  removedIngestRefs: string[];
  /** Children before parents, so snapshotters never see a parent removed under a child. */
  removedSnapshots: Array<{ snapshotter: string; backendKey: string }>;
  referencedBlobs: Set<string>;
  liveBackendRefs: Set<string>;
  /** Backend keys still recorded, per snapshotter. */
  liveSnapshotKeys: Map<string, Set<string>>;
}

/** Marks from every root of every namespace, then deletes what was not reached; one transaction. */
function markAndSweep(db: MetadataDB, now: number): SweepResult {
  const contents = db.prepare("SELECT namespace, digest, labels FROM content").all() as Array<{
    namespace: string;
    digest: string;
    labels: string;
  }>;
  const snapshots = db
    .prepare("SELECT namespace, snapshotter, key, backend_key, parent, labels FROM snapshots")
    .all() as SnapshotRow[];
  const ingests = db
    .prepare("SELECT namespace, ref, backend_ref, expected, expires_at FROM ingests")
    .all() as IngestRow[];
  const leases = db.prepare("SELECT namespace, id, labels FROM leases").all() as Array<{
    namespace: string;
    id: string;
    labels: string;
  }>;
  const resources = db.prepare("SELECT namespace, lease_id, type, id FROM lease_resources").all() as Array<{
    namespace: string;
    lease_id: string;
    type: string;
    id: string;
  }>;
  const images = db.prepare("SELECT namespace, target_digest, labels FROM images").all() as Array<{
    namespace: string;
    target_digest: string;
    labels: string;
  }>;
  const containers = db
    .prepare("SELECT namespace, snapshotter, snapshot_key, labels FROM containers")
    .all() as Array<{
    namespace: string;
    snapshotter: string;
    snapshot_key: string;
    labels: string;
  }>;

  const contentLabels = new Map<string, Labels>();
  for (const c of contents)
    contentLabels.set(nodeKey(contentNode(c.namespace, c.digest)), parseLabels(c.labels));
  const snapshotByKey = new Map<string, { row: SnapshotRow; labels: Labels }>();
  for (const s of snapshots) {
    snapshotByKey.set(nodeKey(snapshotNode(s.namespace, s.snapshotter, s.key)), {
      row: s,
      labels: parseLabels(s.labels),
    });
  }
  const ingestByKey = new Map<string, IngestRow>();
  for (const i of ingests) ingestByKey.set(nodeKey(ingestNode(i.namespace, i.ref)), i);

  // Tricolor marking: `marked` holds gray and black nodes, `gray` the ones whose edges are not
  // followed yet. Resources of gc.flat leases go to `flat`: kept, but their edges are not followed
  // unless something else reaches them too.
  const marked = new Set<string>();
  const flat = new Set<string>();
  const gray: GcNode[] = [];
  const mark = (n: GcNode): void => {
    const k = nodeKey(n);
    if (marked.has(k)) return;
    marked.add(k);
    gray.push(n);
  };
  const markFlat = (n: GcNode): void => void flat.add(nodeKey(n));

  for (const img of images) {
    if (img.target_digest !== "") mark(contentNode(img.namespace, img.target_digest));
    labelReferences(img.namespace, parseLabels(img.labels), mark);
  }
  for (const c of containers) {
    if (c.snapshotter !== "" && c.snapshot_key !== "")
      mark(snapshotNode(c.namespace, c.snapshotter, c.snapshot_key));
    labelReferences(c.namespace, parseLabels(c.labels), mark);
  }
  for (const c of contents) {
    if (contentLabels.get(nodeKey(contentNode(c.namespace, c.digest)))?.[gcLabels.root] !== undefined) {
      mark(contentNode(c.namespace, c.digest));
    }
  }
  for (const { row, labels } of snapshotByKey.values()) {
    if (labels[gcLabels.root] !== undefined) mark(snapshotNode(row.namespace, row.snapshotter, row.key));
  }
  // Only ingests with an expiry still ahead are roots; one without expiry was opened under a lease
  // and lives exactly as long as a lease holds it (containerd's rule).
  for (const i of ingests) {
    if (i.expires_at !== null && i.expires_at > now) mark(ingestNode(i.namespace, i.ref));
  }

  const expiredLeases: Array<{ namespace: string; id: string }> = [];
  const liveLeases = new Map<string, { flat: boolean }>();
  for (const l of leases) {
    const labels = parseLabels(l.labels);
    const expire = labels[gcLabels.expire];
    const expiresAt = expire === undefined ? undefined : parseRfc3339(expire);
    if (expiresAt !== undefined && now > expiresAt) {
      expiredLeases.push({ namespace: l.namespace, id: l.id });
      continue;
    }
    liveLeases.set(JSON.stringify([l.namespace, l.id]), { flat: labels[gcLabels.flat] !== undefined });
  }
  for (const r of resources) {
    const lease = liveLeases.get(JSON.stringify([r.namespace, r.lease_id]));
    if (lease === undefined) continue;
    const keep = lease.flat ? markFlat : mark;
    if (r.type === "content") keep(contentNode(r.namespace, r.id));
    else if (r.type === "ingests") mark(ingestNode(r.namespace, r.id));
    else if (r.type.startsWith("snapshots/"))
      keep(snapshotNode(r.namespace, r.type.slice("snapshots/".length), r.id));
  }

  for (let n = gray.pop(); n !== undefined; n = gray.pop()) {
    if (n.kind === "content") {
      const labels = contentLabels.get(nodeKey(n));
      if (labels !== undefined) labelReferences(n.ns, labels, mark);
    } else if (n.kind === "snapshot") {
      const s = snapshotByKey.get(nodeKey(n));
      if (s === undefined) continue; // an edge to something that does not exist
      if (s.row.parent !== "") mark(snapshotNode(n.ns, n.snapshotter, s.row.parent));
      labelReferences(n.ns, s.labels, mark);
    } else {
      const i = ingestByKey.get(nodeKey(n));
      if (i !== undefined && i.expected !== "") mark(contentNode(n.ns, i.expected));
    }
  }
  const reachable = (n: GcNode): boolean => marked.has(nodeKey(n)) || flat.has(nodeKey(n));

  let contentRemoved = 0;
  const delContent = db.prepare("DELETE FROM content WHERE namespace = ? AND digest = ?");
  for (const c of contents) {
    if (!reachable(contentNode(c.namespace, c.digest)))
      contentRemoved += delContent.run(c.namespace, c.digest).changes;
  }

  let ingestsRemoved = 0;
  const removedIngestRefs: string[] = [];
  const delIngest = db.prepare("DELETE FROM ingests WHERE namespace = ? AND ref = ?");
  for (const i of ingests) {
    if (reachable(ingestNode(i.namespace, i.ref))) continue;
    ingestsRemoved += delIngest.run(i.namespace, i.ref).changes;
    removedIngestRefs.push(i.backend_ref);
  }

  const delSnapshot = db.prepare("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?");
  const removed: Array<{ row: SnapshotRow; depth: number }> = [];
  for (const { row } of snapshotByKey.values()) {
    if (reachable(snapshotNode(row.namespace, row.snapshotter, row.key))) continue;
    delSnapshot.run(row.namespace, row.snapshotter, row.key);
    removed.push({ row, depth: snapshotDepth(row, snapshotByKey) });
  }
  removed.sort((a, b) => b.depth - a.depth);

  let leasesRemoved = 0;
  const delLease = db.prepare("DELETE FROM leases WHERE namespace = ? AND id = ?");
  const delLeaseResources = db.prepare("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?");
  for (const l of expiredLeases) {
    leasesRemoved += delLease.run(l.namespace, l.id).changes;
    delLeaseResources.run(l.namespace, l.id);
  }

  // What the backend must keep, over all namespaces: every committed digest, and the blobs shared
  // ingests are about to link (they may belong to another namespace that just dropped them).
  const referencedBlobs = new Set(
    (
      db
        .prepare(
          "SELECT digest AS d FROM content UNION SELECT expected AS d FROM ingests WHERE expected != ''",
        )
        .all() as Array<{ d: string }>
    ).map((r) => r.d),
  );
  const liveBackendRefs = new Set(
    (db.prepare("SELECT backend_ref FROM ingests").all() as Array<{ backend_ref: string }>).map(
      (r) => r.backend_ref,
    ),
  );

  const liveSnapshotKeys = new Map<string, Set<string>>();
  for (const r of db.prepare("SELECT snapshotter, backend_key FROM snapshots").all() as Array<{
    snapshotter: string;
    backend_key: string;
  }>) {
    let keys = liveSnapshotKeys.get(r.snapshotter);
    if (keys === undefined) liveSnapshotKeys.set(r.snapshotter, (keys = new Set()));
    keys.add(r.backend_key);
  }

  return {
    liveSnapshotKeys,
    contentRemoved,
    ingestsRemoved,
    leasesRemoved,
    removedIngestRefs,
    removedSnapshots: removed.map(({ row }) => ({
      snapshotter: row.snapshotter,
      backendKey: row.backend_key,
    })),
    referencedBlobs,
    liveBackendRefs,
  };
}

/** Length of a snapshot's parent chain within its namespace and snapshotter (cycles cut off). */
function snapshotDepth(row: SnapshotRow, byKey: Map<string, { row: SnapshotRow }>): number {
  let depth = 0;
  const seen = new Set<string>();
  for (let cur: SnapshotRow | undefined = row; cur !== undefined && cur.parent !== ""; depth++) {
    const k = nodeKey(snapshotNode(cur.namespace, cur.snapshotter, cur.parent));
    if (seen.has(k)) break;
    seen.add(k);
    cur = byKey.get(k)?.row;
  }
  return depth;
}

/**
 * One full collection over all namespaces. The metadata part runs in one write transaction; the
 * backend removals follow once it has committed, so a crash in between only leaves unreferenced
 * files that the next run removes.
 */
export async function collectGarbage(db: MetadataDB, deps: GcDeps): Promise<GcStats> {
  const run = async (): Promise<GcStats> => {
    const start = performance.now();
    const now = deps.now?.() ?? Date.now();
    const sweep = db.transaction(() => markAndSweep(db, now)).immediate();
    // The rows must be gone for good before the bytes they named are: a power loss must not
    // bring back a row whose blob or snapshot was removed.
    await metadataDurable(db);
    const errors: string[] = [];
    const note = (what: string, err: unknown): void => {
      errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    };

    for (const ref of sweep.removedIngestRefs) {
      try {
        await deps.contentBackend.abort(ref);
      } catch (err) {
        if (!isCode(err, "not-found")) note(`abort ingest ${ref}`, err);
      }
    }

    let snapshotsRemoved = 0;
    for (const s of sweep.removedSnapshots) {
      snapshotsRemoved++;
      const sn = deps.snapshotters?.get(s.snapshotter);
      if (sn === undefined) continue;
      try {
        await sn.remove(s.backendKey);
      } catch (err) {
        if (!isCode(err, "not-found")) note(`remove snapshot ${s.snapshotter}/${s.backendKey}`, err);
      }
    }

    for (const [name, sn] of deps.snapshotters ?? []) {
      if (sn.walk === undefined) continue;
      const live = sweep.liveSnapshotKeys.get(name) ?? new Set<string>();
      const orphans = new Map<string, string>();
      await sn.walk((info) => {
        if (!live.has(info.name)) orphans.set(info.name, info.parent);
      });
      // Children first: an orphan whose child is also an orphan waits until the child is gone.
      const depth = (key: string): number => {
        let d = 0;
        for (let p = orphans.get(key); p !== undefined && p !== "" && d < orphans.size; p = orphans.get(p))
          d++;
        return d;
      };
      for (const key of [...orphans.keys()].sort((a, b) => depth(b) - depth(a))) {
        try {
          await sn.remove(key);
          snapshotsRemoved++;
        } catch (err) {
          if (!isCode(err, "not-found")) note(`remove orphan snapshot ${name}/${key}`, err);
        }
      }
    }

    // Collect first, delete after: the walk must not race its own deletions.
    const unreferenced: string[] = [];
    await deps.contentBackend.walk((info) => {
      if (!sweep.referencedBlobs.has(info.digest)) unreferenced.push(info.digest);
    });
    let blobsRemoved = 0;
    for (const digest of unreferenced) {
      try {
        await deps.contentBackend.delete(digest);
        blobsRemoved++;
      } catch (err) {
        if (!isCode(err, "not-found")) note(`delete blob ${digest}`, err);
      }
    }

    let orphanIngestsAborted = 0;
    const removedRefs = new Set(sweep.removedIngestRefs);
    if (deps.contentBackend.listStatuses !== undefined) {
      for (const st of await deps.contentBackend.listStatuses()) {
        if (sweep.liveBackendRefs.has(st.ref) || removedRefs.has(st.ref)) continue;
        try {
          await deps.contentBackend.abort(st.ref);
          orphanIngestsAborted++;
        } catch (err) {
          if (!isCode(err, "not-found")) note(`abort orphan ingest ${st.ref}`, err);
        }
      }
    }

    return {
      durationMs: performance.now() - start,
      contentRemoved: sweep.contentRemoved,
      ingestsRemoved: sweep.ingestsRemoved,
      snapshotsRemoved,
      leasesRemoved: sweep.leasesRemoved,
      blobsRemoved,
      orphanIngestsAborted,
      errors,
    };
  };
  return deps.lock !== undefined ? deps.lock.exclusive(run) : run();
}
