// The namespace store: the global set of namespaces and their labels. A namespace also appears on
// its first namespaced write (ensureNamespace); deleting one requires it to hold no objects.
import { LabelWriteError } from "../labels/labels.js";
import { BerthError, alreadyExists, failedPrecondition, notFound } from "../../errdefs/errors.js";
import { validateIdentifier } from "../identifiers/identifiers.js";
import { ensureNamespace, type MetadataDB } from "./db.js";
import { decodeStringMap, encodeStringMap, mapPathKey, ownEntry, setEntry } from "./field-paths.js";
import { type StoreOptions, quote, validateLabelsOf } from "./store-support.js";

export interface Namespace {
  name: string;
  labels: Record<string, string>;
}

export interface NamespaceStore {
  /** InvalidArgument for a bad name or label; AlreadyExists when the namespace exists (even implicitly). */
  create(name: string, labels?: Record<string, string>): Namespace;
  /**
   * The namespace's labels. As in containerd 1.6, a namespace that does not exist answers with no
   * labels rather than NotFound (clients read default labels before their first write).
   */
  get(name: string): Namespace;
  exists(name: string): boolean;
  /** All namespace names, sorted bytewise. */
  list(): string[];
  /**
   * Field-mask update of the labels: paths "labels.<key>" (an empty value deletes the key); no
   * paths replaces all labels. Any other path, "labels" included, is InvalidArgument, as in
   * containerd. Creates the namespace when it does not exist yet, as containerd's SetLabel does.
   */
  update(name: string, labels: Record<string, string>, paths: string[]): Namespace;
  /**
   * NotFound when absent; FailedPrecondition while it holds images, blobs, containers or
   * snapshots. Its leases and ingest records go with it, as containerd drops the whole bucket.
   */
  delete(name: string): void;
}

/** containerd's namespace label write reports a bare "key required" for an empty key. */
function validateNamespaceLabels(labels: Record<string, string>): void {
  try {
    validateLabelsOf("namespace.Labels", labels);
  } catch (err) {
    if (err instanceof LabelWriteError) throw new LabelWriteError("unknown", "key required", { cause: err });
    throw err;
  }
}

export function createNamespaceStore(db: MetadataDB, opts: StoreOptions = {}): NamespaceStore {
  const now = opts.now ?? (() => new Date());
  const mutated = (deletion: boolean) => opts.onMutation?.({ deletion });

  const selectOne = db.prepare<[string], { labels: string }>("SELECT labels FROM namespaces WHERE name = ?");
  const selectAll = db.prepare<[], { name: string }>("SELECT name FROM namespaces ORDER BY name");
  const insert = db.prepare<[string, string, number, number]>(
    "INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
  );
  const setLabels = db.prepare<[string, number, string]>(
    "UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
  );
  const hasRows = (table: string) =>
    db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM ${table} WHERE namespace = ? LIMIT 1`);
  const occupied: [kind: string, probe: ReturnType<typeof hasRows>][] = [
    // containerd's order and words: images, blobs, containers, then snapshot-<snapshotter>.
    ["images", hasRows("images")],
    ["blobs", hasRows("content")],
    ["containers", hasRows("containers")],
  ];
  const snapshotters = db.prepare<[string], { snapshotter: string }>(
    "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter",
  );
  const dropOwned = ["leases", "lease_resources", "ingests"].map((table) =>
    db.prepare<[string]>(`DELETE FROM ${table} WHERE namespace = ?`),
  );
  const dropNamespace = db.prepare<[string]>("DELETE FROM namespaces WHERE name = ?");

  const readLabels = (name: string) => {
    const row = selectOne.get(name);
    return row === undefined ? undefined : decodeStringMap(row.labels);
  };

  const create = db.transaction((name: string, labels: Record<string, string>): Namespace => {
    if (selectOne.get(name) !== undefined) throw alreadyExists(`namespace ${quote(name)}`);
    const t = now().getTime();
    const stored = encodeStringMap(labels);
    insert.run(name, stored, t, t);
    return { name, labels: decodeStringMap(stored) };
  });

  const update = db.transaction(
    (name: string, labels: Record<string, string>, paths: string[]): Namespace => {
      const t = now().getTime();
      ensureNamespace(db, name, t);
      let next: Record<string, string>;
      if (paths.length === 0) {
        validateNamespaceLabels(labels);
        next = { ...labels };
      } else {
        next = { ...(readLabels(name) ?? {}) };
        for (const path of paths) {
          const key = mapPathKey(path, "labels");
          // containerd's service answers with a bare status here, without the errdefs suffix.
          if (key === undefined)
            throw new BerthError("invalid-argument", `cannot update ${quote(path)} field`);
          const value = ownEntry(labels, key) ?? "";
          validateNamespaceLabels({ [key]: value });
          if (value === "") delete next[key];
          else setEntry(next, key, value);
        }
      }
      const stored = encodeStringMap(next);
      setLabels.run(stored, t, name);
      return { name, labels: decodeStringMap(stored) };
    },
  );

  const remove = db.transaction((name: string): void => {
    if (selectOne.get(name) === undefined) throw notFound(`namespace ${quote(name)}`);
    const left = occupied.filter(([, probe]) => probe.get(name) !== undefined).map(([kind]) => kind);
    for (const { snapshotter } of snapshotters.all(name)) left.push(`snapshot-${snapshotter}`);
    if (left.length > 0)
      throw failedPrecondition(`namespace ${quote(name)} must be empty, but it still has ${left.join(", ")}`);
    for (const stmt of dropOwned) stmt.run(name);
    dropNamespace.run(name);
  });

  return {
    create(name, labels = {}) {
      validateIdentifier(name);
      validateNamespaceLabels(labels);
      const ns = create(name, labels);
      mutated(false);
      return ns;
    },
    get(name) {
      return { name, labels: readLabels(name) ?? {} };
    },
    exists(name) {
      return selectOne.get(name) !== undefined;
    },
    list() {
      return selectAll.all().map((r) => r.name);
    },
    update(name, labels, paths) {
      validateIdentifier(name);
      const ns = update(name, labels, paths);
      mutated(false);
      return ns;
    },
    delete(name) {
      remove(name);
      mutated(true);
    },
  };
}
