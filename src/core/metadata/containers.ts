// The container store: per-namespace container records (runtime, spec, snapshot, extensions), with
// containerd 1.6's validation, field-mask updates and messages. Protobuf Anys are kept byte for byte.
import { alreadyExists, invalidArgument, notFound } from "../../errdefs/errors.js";
import type { AnyValue } from "../any-value.js";
import type { RequestContext } from "../context.js";
import { containerAdaptor } from "../filters/adaptors.js";
import { parseFilters } from "../filters/filter.js";
import { validateIdentifier } from "../identifiers/identifiers.js";
import { ensureNamespace, type MetadataDB } from "./db.js";
import {
  compactStringMap,
  decodeStringMap,
  encodeStringMap,
  mapPathKey,
  ownEntry,
  setEntry,
} from "./field-paths.js";
import { type StoreOptions, quote, requireNamespace, validateLabelsOf, withPrefix } from "./store-support.js";

export interface ContainerRuntime {
  name: string;
  options?: AnyValue;
}

export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: ContainerRuntime;
  spec?: AnyValue;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyValue>;
  /** containerd 1.7's sandbox id; "" when the container belongs to none. */
  sandbox: string;
  createdAt: Date;
  updatedAt: Date;
}

/** What callers hand to create and update; omitted strings are "", timestamps are the store's. */
export interface ContainerInput {
  id: string;
  labels?: Record<string, string>;
  image?: string;
  runtime: ContainerRuntime;
  spec?: AnyValue;
  snapshotter?: string;
  snapshotKey?: string;
  extensions?: Record<string, AnyValue>;
  sandbox?: string;
}

export interface ContainerStore {
  /** NotFound `container "<id>" in namespace "<ns>"`. */
  get(ctx: RequestContext, id: string): Container;
  /** Containers matching any of the filters (none: all), sorted by id. */
  list(ctx: RequestContext, filters?: string[]): Container[];
  /** InvalidArgument "create container failed validation: ..."; AlreadyExists `container "<id>"`. */
  create(ctx: RequestContext, container: ContainerInput): Container;
  /**
   * Field-mask update: "labels", "labels.<k>", "spec", "extensions", "extensions.<k>", "image",
   * "snapshotkey". No paths replaces all of those and requires runtime.name and snapshotter to be
   * unchanged; runtime options and sandbox stay as stored. NotFound `container "<id>"`;
   * InvalidArgument for other paths.
   */
  update(ctx: RequestContext, container: ContainerInput, fieldpaths?: string[]): Container;
  /** NotFound `container <id>`. Leaves tasks and snapshots alone, as containerd does. */
  delete(ctx: RequestContext, id: string): void;
}

interface ContainerRow {
  id: string;
  labels: string;
  image: string;
  runtime_name: string;
  runtime_options_type: string | null;
  runtime_options: Buffer | null;
  spec_type: string | null;
  spec: Buffer | null;
  snapshotter: string;
  snapshot_key: string;
  extensions: string;
  sandbox: string;
  created_at: number;
  updated_at: number;
}

const fullReplacePaths = ["labels", "spec", "extensions", "image", "snapshotkey"];

/** containerd's validateContainer, in its order and words. */
export function validateContainer(c: ContainerInput): void {
  withPrefix("container.ID", () => validateIdentifier(c.id));
  for (const key of Object.keys(c.extensions ?? {}))
    if (key === "") throw invalidArgument("container.Extension keys must not be zero-length");
  validateLabelsOf("containers.Labels", c.labels, `failed to write container ${quote(c.id)}`);
  if (!c.runtime?.name) throw invalidArgument("container.Runtime.Name must be set");
  if (c.spec === undefined) throw invalidArgument("container.Spec must be set");
  if (c.snapshotKey && !c.snapshotter)
    throw invalidArgument("container.Snapshotter must be set if container.SnapshotKey is set");
}

function copyAny(a: AnyValue): AnyValue {
  return { typeUrl: a.typeUrl, value: new Uint8Array(a.value) };
}

/** A Buffer view over the bytes for binding (no copy; SQLite copies on write). */
function blob(a: AnyValue | undefined): Buffer | null {
  return a === undefined ? null : Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength);
}

function readAny(typeUrl: string | null, value: Buffer | null): AnyValue | undefined {
  return typeUrl === null ? undefined : { typeUrl, value: new Uint8Array(value ?? new Uint8Array()) };
}

function encodeExtensions(extensions: Record<string, AnyValue>): string {
  const sorted = Object.keys(extensions).sort();
  return JSON.stringify(
    Object.fromEntries(
      sorted.map((k) => {
        const a = extensions[k]!;
        return [k, { typeUrl: a.typeUrl, value: Buffer.from(a.value).toString("base64") }];
      }),
    ),
  );
}

function decodeExtensions(json: string): Record<string, AnyValue> {
  const raw = JSON.parse(json) as Record<string, { typeUrl: string; value: string }>;
  return Object.fromEntries(
    Object.entries(raw).map(([k, a]) => [
      k,
      { typeUrl: a.typeUrl, value: new Uint8Array(Buffer.from(a.value, "base64")) },
    ]),
  );
}

function fromRow(row: ContainerRow): Container {
  const options = readAny(row.runtime_options_type, row.runtime_options);
  const spec = readAny(row.spec_type, row.spec);
  return {
    id: row.id,
    labels: decodeStringMap(row.labels),
    image: row.image,
    runtime: options === undefined ? { name: row.runtime_name } : { name: row.runtime_name, options },
    ...(spec === undefined ? {} : { spec }),
    snapshotter: row.snapshotter,
    snapshotKey: row.snapshot_key,
    extensions: decodeExtensions(row.extensions),
    sandbox: row.sandbox,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The record as stored: copies of every Any, empty label values dropped. */
function normalised(c: ContainerInput, createdAt: Date, updatedAt: Date): Container {
  const options = c.runtime.options;
  return {
    id: c.id,
    labels: compactStringMap(c.labels),
    image: c.image ?? "",
    runtime:
      options === undefined ? { name: c.runtime.name } : { name: c.runtime.name, options: copyAny(options) },
    ...(c.spec === undefined ? {} : { spec: copyAny(c.spec) }),
    snapshotter: c.snapshotter ?? "",
    snapshotKey: c.snapshotKey ?? "",
    extensions: Object.fromEntries(Object.entries(c.extensions ?? {}).map(([k, a]) => [k, copyAny(a)])),
    sandbox: c.sandbox ?? "",
    createdAt,
    updatedAt,
  };
}

export function createContainerStore(db: MetadataDB, opts: StoreOptions = {}): ContainerStore {
  const now = opts.now ?? (() => new Date());
  const mutated = (deletion: boolean) => opts.onMutation?.({ deletion });

  const columns =
    "id, labels, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, snapshotter, snapshot_key, extensions, sandbox, created_at, updated_at";
  const selectOne = db.prepare<[string, string], ContainerRow>(
    `SELECT ${columns} FROM containers WHERE namespace = ? AND id = ?`,
  );
  const selectAll = db.prepare<[string], ContainerRow>(
    `SELECT ${columns} FROM containers WHERE namespace = ? ORDER BY id`,
  );
  const insert = db.prepare(
    `INSERT INTO containers (namespace, ${columns}) VALUES (@namespace, @id, @labels, @image, @runtimeName,
       @optionsType, @options, @specType, @spec, @snapshotter, @snapshotKey, @extensions, @sandbox, @createdAt, @updatedAt)`,
  );
  const replace = db.prepare(
    `UPDATE containers SET labels = @labels, image = @image, runtime_name = @runtimeName,
       runtime_options_type = @optionsType, runtime_options = @options, spec_type = @specType, spec = @spec,
       snapshotter = @snapshotter, snapshot_key = @snapshotKey, extensions = @extensions, sandbox = @sandbox,
       updated_at = @updatedAt
     WHERE namespace = @namespace AND id = @id`,
  );
  const remove = db.prepare<[string, string]>("DELETE FROM containers WHERE namespace = ? AND id = ?");

  const params = (namespace: string, c: Container) => ({
    namespace,
    id: c.id,
    labels: encodeStringMap(c.labels),
    image: c.image,
    runtimeName: c.runtime.name,
    optionsType: c.runtime.options?.typeUrl ?? null,
    options: blob(c.runtime.options),
    specType: c.spec?.typeUrl ?? null,
    spec: blob(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    extensions: encodeExtensions(c.extensions),
    sandbox: c.sandbox,
    createdAt: c.createdAt.getTime(),
    updatedAt: c.updatedAt.getTime(),
  });

  const createTx = db.transaction((namespace: string, input: ContainerInput): Container => {
    const t = now();
    ensureNamespace(db, namespace, t.getTime());
    if (selectOne.get(namespace, input.id) !== undefined) throw alreadyExists(`container ${quote(input.id)}`);
    const container = normalised(input, t, t);
    insert.run(params(namespace, container));
    return container;
  });

  const updateTx = db.transaction(
    (namespace: string, input: ContainerInput, fieldpaths: string[]): Container => {
      const row = selectOne.get(namespace, input.id);
      if (row === undefined) throw notFound(`container ${quote(input.id)}`);
      const current = fromRow(row);
      let paths = fieldpaths;
      if (paths.length === 0) {
        paths = fullReplacePaths;
        // Immutable fields must match on a full replace, so that they can become mutable later.
        if ((input.snapshotter ?? "") !== current.snapshotter)
          throw invalidArgument("container.Snapshotter field is immutable");
        if (input.runtime?.name !== current.runtime.name)
          throw invalidArgument("container.Runtime.Name field is immutable");
      }
      const next: Container = {
        ...current,
        labels: { ...current.labels },
        extensions: { ...current.extensions },
      };
      for (const path of paths) {
        const labelKey = mapPathKey(path, "labels");
        const extensionKey = mapPathKey(path, "extensions");
        // A label missing from the request becomes "", which the write drops: that deletes it.
        if (labelKey !== undefined) setEntry(next.labels, labelKey, ownEntry(input.labels, labelKey) ?? "");
        // containerd stores a missing extension as an empty Any rather than deleting it; so do we.
        else if (extensionKey !== undefined)
          setEntry(
            next.extensions,
            extensionKey,
            ownEntry(input.extensions, extensionKey) ?? { typeUrl: "", value: new Uint8Array() },
          );
        else if (path === "labels") next.labels = { ...input.labels };
        else if (path === "spec") {
          if (input.spec === undefined) delete next.spec;
          else next.spec = input.spec;
        } else if (path === "extensions") next.extensions = { ...input.extensions };
        else if (path === "image") next.image = input.image ?? "";
        else if (path === "snapshotkey") next.snapshotKey = input.snapshotKey ?? "";
        else throw invalidArgument(`cannot update ${quote(path)} field on ${quote(input.id)}`);
      }
      withPrefix("update failed validation", () => validateContainer(next));
      const t = now();
      ensureNamespace(db, namespace, t.getTime());
      const container = normalised(next, current.createdAt, t);
      replace.run(params(namespace, container));
      return container;
    },
  );

  const deleteTx = db.transaction((namespace: string, id: string): void => {
    if (remove.run(namespace, id).changes === 0) throw notFound(`container ${id}`);
  });

  return {
    get(ctx, id) {
      const namespace = requireNamespace(ctx);
      const row = selectOne.get(namespace, id);
      if (row === undefined) throw notFound(`container ${quote(id)} in namespace ${quote(namespace)}`);
      return fromRow(row);
    },
    list(ctx, filters = []) {
      const namespace = requireNamespace(ctx);
      const filter = parseFilters(filters);
      return selectAll
        .all(namespace)
        .map(fromRow)
        .filter((c) =>
          filter.match(
            containerAdaptor({ id: c.id, image: c.image, runtimeName: c.runtime.name, labels: c.labels }),
          ),
        );
    },
    create(ctx, container) {
      const namespace = requireNamespace(ctx);
      withPrefix("create container failed validation", () => validateContainer(container));
      const created = createTx(namespace, container);
      mutated(false);
      return created;
    },
    update(ctx, container, fieldpaths = []) {
      const namespace = requireNamespace(ctx);
      if (container.id === "") throw invalidArgument("must specify a container id");
      const updated = updateTx(namespace, container, fieldpaths);
      mutated(false);
      return updated;
    },
    delete(ctx, id) {
      deleteTx(requireNamespace(ctx), id);
      mutated(true);
    },
  };
}
