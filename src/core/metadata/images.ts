// The image store: per-namespace image records (a name pointing at a target descriptor, plus
// labels), with containerd 1.6's validation, field-mask updates and error messages.
import { alreadyExists, invalidArgument, notFound } from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import { imageAdaptor } from "../filters/adaptors.js";
import { parseFilters } from "../filters/filter.js";
import { digestProblem } from "../content/digest.js";
import { ensureNamespace, type MetadataDB } from "./db.js";
import {
  compactStringMap,
  decodeStringMap,
  encodeStringMap,
  mapPathKey,
  ownEntry,
  setEntry,
} from "./field-paths.js";
import { type StoreOptions, quote, requireNamespace, validateLabelsOf } from "./store-support.js";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export interface Image {
  name: string;
  labels: Record<string, string>;
  target: Descriptor;
  createdAt: Date;
  updatedAt: Date;
}

/** What callers hand to create and update; timestamps are the store's to set. */
export interface ImageInput {
  name: string;
  labels?: Record<string, string>;
  target: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> };
}

export interface ImageStore {
  /** NotFound `image "<name>"`. */
  get(ctx: RequestContext, name: string): Image;
  /** Images matching any of the filters (none: all), sorted by name. */
  list(ctx: RequestContext, filters?: string[]): Image[];
  /** InvalidArgument when validation fails; AlreadyExists `image "<name>"`. */
  create(ctx: RequestContext, image: ImageInput): Image;
  /**
   * Field-mask update: "labels", "labels.<k>", "annotations", "annotations.<k>", "target"; no
   * paths replaces labels and target. NotFound when absent; InvalidArgument for other paths.
   */
  update(ctx: RequestContext, image: ImageInput, fieldpaths?: string[]): Image;
  /** NotFound `image "<name>"`. */
  delete(ctx: RequestContext, name: string): void;
}

interface ImageRow {
  name: string;
  labels: string;
  target_media_type: string;
  target_digest: string;
  target_size: number;
  target_annotations: string;
  created_at: number;
  updated_at: number;
}

/** containerd's validateImage: a name, valid labels, and a target with digest, size and media type. */
export function validateImage(image: ImageInput): void {
  if (image.name === "") throw invalidArgument("image name must not be empty");
  validateLabelsOf("image.Labels", image.labels, `writing labels for image ${image.name}`);
  const { digest, size, mediaType } = image.target;
  const problem = digestProblem(digest);
  if (problem !== undefined) throw invalidArgument(`Target.Digest ${quote(digest)} invalid: ${problem}`);
  if (!(size > 0)) throw invalidArgument("Target.Size must be greater than zero");
  if (mediaType === "") throw invalidArgument("Target.MediaType must be set");
}

function fromRow(row: ImageRow): Image {
  return {
    name: row.name,
    labels: decodeStringMap(row.labels),
    target: {
      mediaType: row.target_media_type,
      digest: row.target_digest,
      size: row.target_size,
      annotations: decodeStringMap(row.target_annotations),
    },
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The record as stored: empty label and annotation values dropped, as containerd's writeImage does. */
function normalised(image: ImageInput, createdAt: Date, updatedAt: Date): Image {
  return {
    name: image.name,
    labels: compactStringMap(image.labels),
    target: {
      mediaType: image.target.mediaType,
      digest: image.target.digest,
      size: image.target.size,
      annotations: compactStringMap(image.target.annotations),
    },
    createdAt,
    updatedAt,
  };
}

export function createImageStore(db: MetadataDB, opts: StoreOptions = {}): ImageStore {
  const now = opts.now ?? (() => new Date());
  const mutated = (deletion: boolean) => opts.onMutation?.({ deletion });

  const columns =
    "name, labels, target_media_type, target_digest, target_size, target_annotations, created_at, updated_at";
  const selectOne = db.prepare<[string, string], ImageRow>(
    `SELECT ${columns} FROM images WHERE namespace = ? AND name = ?`,
  );
  const selectAll = db.prepare<[string], ImageRow>(
    `SELECT ${columns} FROM images WHERE namespace = ? ORDER BY name`,
  );
  const insert = db.prepare(
    `INSERT INTO images (namespace, ${columns}) VALUES (@namespace, @name, @labels, @mediaType, @digest, @size, @annotations, @createdAt, @updatedAt)`,
  );
  const replace = db.prepare(
    `UPDATE images SET labels = @labels, target_media_type = @mediaType, target_digest = @digest,
       target_size = @size, target_annotations = @annotations, updated_at = @updatedAt
     WHERE namespace = @namespace AND name = @name`,
  );
  const remove = db.prepare<[string, string]>("DELETE FROM images WHERE namespace = ? AND name = ?");

  const params = (namespace: string, image: Image) => ({
    namespace,
    name: image.name,
    labels: encodeStringMap(image.labels),
    mediaType: image.target.mediaType,
    digest: image.target.digest,
    size: image.target.size,
    annotations: encodeStringMap(image.target.annotations),
    createdAt: image.createdAt.getTime(),
    updatedAt: image.updatedAt.getTime(),
  });

  const createTx = db.transaction((namespace: string, input: ImageInput): Image => {
    validateImage(input);
    const t = now();
    ensureNamespace(db, namespace, t.getTime());
    if (selectOne.get(namespace, input.name) !== undefined) throw alreadyExists(`image ${quote(input.name)}`);
    const image = normalised(input, t, t);
    insert.run(params(namespace, image));
    return image;
  });

  const updateTx = db.transaction((namespace: string, input: ImageInput, fieldpaths: string[]): Image => {
    const row = selectOne.get(namespace, input.name);
    if (row === undefined) throw notFound(`image ${quote(input.name)}`);
    const current = fromRow(row);
    let next: ImageInput;
    if (fieldpaths.length === 0) {
      next = input;
    } else {
      const labels = { ...current.labels };
      let target = { ...current.target, annotations: { ...current.target.annotations } };
      for (const path of fieldpaths) {
        const labelKey = mapPathKey(path, "labels");
        const annotationKey = mapPathKey(path, "annotations");
        // A key missing from the request becomes "", which the write drops: that deletes it.
        if (labelKey !== undefined) setEntry(labels, labelKey, ownEntry(input.labels, labelKey) ?? "");
        else if (annotationKey !== undefined)
          setEntry(
            target.annotations,
            annotationKey,
            ownEntry(input.target.annotations, annotationKey) ?? "",
          );
        else if (path === "labels") replaceAll(labels, input.labels);
        else if (path === "annotations") target.annotations = { ...input.target.annotations };
        // The target is replaced as a unit: digest, size and media type only make sense together.
        else if (path === "target")
          target = { ...input.target, annotations: { ...input.target.annotations } };
        else throw invalidArgument(`cannot update ${quote(path)} field on image ${quote(input.name)}`);
      }
      next = { name: input.name, labels, target };
    }
    validateImage(next);
    const t = now();
    ensureNamespace(db, namespace, t.getTime());
    const image = normalised(next, current.createdAt, t);
    replace.run(params(namespace, image));
    return image;
  });

  const deleteTx = db.transaction((namespace: string, name: string): void => {
    if (remove.run(namespace, name).changes === 0) throw notFound(`image ${quote(name)}`);
  });

  return {
    get(ctx, name) {
      const row = selectOne.get(requireNamespace(ctx), name);
      if (row === undefined) throw notFound(`image ${quote(name)}`);
      return fromRow(row);
    },
    list(ctx, filters = []) {
      const namespace = requireNamespace(ctx);
      const filter = parseFilters(filters);
      return selectAll
        .all(namespace)
        .map(fromRow)
        .filter((image) => filter.match(imageAdaptor(image)));
    },
    create(ctx, image) {
      const created = createTx(requireNamespace(ctx), image);
      mutated(false);
      return created;
    },
    update(ctx, image, fieldpaths = []) {
      const namespace = requireNamespace(ctx);
      if (image.name === "") throw invalidArgument("image name is required for update");
      const updated = updateTx(namespace, image, fieldpaths);
      mutated(false);
      return updated;
    },
    delete(ctx, name) {
      deleteTx(requireNamespace(ctx), name);
      mutated(true);
    },
  };
}

function replaceAll(map: Record<string, string>, next: Record<string, string> | undefined): void {
  for (const key of Object.keys(map)) delete map[key];
  for (const [key, value] of Object.entries(next ?? {})) setEntry(map, key, value);
}
