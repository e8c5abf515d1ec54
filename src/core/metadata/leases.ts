// The lease manager: per-namespace leases (GC roots while they live) and the resources they hold,
// with containerd 1.6's checks and messages. Which objects a deletion frees is the GC's decision.
import { validateLabel } from "../labels/labels.js";
import { randomBytes, randomInt } from "node:crypto";
import { alreadyExists, invalidArgument, notFound } from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import { leaseAdaptor } from "../filters/adaptors.js";
import { parseFilters } from "../filters/filter.js";
import { ensureNamespace, type MetadataDB } from "./db.js";
import { decodeStringMap, encodeStringMap } from "./field-paths.js";
import { validateLeaseResource } from "./lease-resources.js";
import { type StoreOptions, quote, requireNamespace } from "./store-support.js";

export interface Lease {
  id: string;
  labels: Record<string, string>;
  createdAt: Date;
}

/** type is "content" (id a digest), "ingests" (id an ingest ref) or "snapshots/<snapshotter>" (id a key). */
export interface LeaseResource {
  id: string;
  type: string;
}

export interface LeaseManager {
  /**
   * InvalidArgument without an id; AlreadyExists `lease "<id>"`. Labels are not size-checked,
   * as in containerd 1.6; empty label values are dropped.
   */
  create(ctx: RequestContext, lease: { id: string; labels?: Record<string, string> }): Lease;
  /** NotFound `lease "<id>"`. Drops the lease's resource records with it. */
  delete(ctx: RequestContext, id: string): void;
  /** Leases matching any of the filters (none: all), sorted by id. */
  list(ctx: RequestContext, filters?: string[]): Lease[];
  /** NotFound `lease "<id>"`; InvalidArgument or NotImplemented for a bad resource. Idempotent. */
  addResource(ctx: RequestContext, leaseId: string, resource: LeaseResource): void;
  /** NotFound `lease "<id>"`; a resource the lease does not hold is not an error. */
  deleteResource(ctx: RequestContext, leaseId: string, resource: LeaseResource): void;
  /** containerd's order: content, then ingests, then snapshots by snapshotter; each sorted by id. */
  listResources(ctx: RequestContext, leaseId: string): LeaseResource[];
}

/** The lease label that ends its life as a GC root (RFC 3339). */
export const gcExpireLabel = "containerd.io/gc.expire";

// Go's time.RFC3339 as time.Parse accepts it: optional fractional seconds, "Z" or a numeric offset.
const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 time as Go's time.Parse(time.RFC3339, s) would; undefined when invalid. */
export function parseRFC3339(s: string): Date | undefined {
  const m = rfc3339.exec(s);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const fraction = m[7] ?? "";
  const zone = m[8] ?? "Z";
  if (h > 23 || mi > 59 || se > 59) return undefined;
  // setUTCFullYear, unlike Date.UTC, does not read years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d)
    return undefined;
  date.setUTCHours(h, mi, se, Math.floor(Number(`0${fraction}`) * 1000));
  let offsetMinutes = 0;
  if (zone !== "Z") {
    const [oh, om] = zone.slice(1).split(":").map(Number) as [number, number];
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (zone.startsWith("-") ? -1 : 1) * (oh * 60 + om);
  }
  return new Date(date.getTime() - offsetMinutes * 60_000);
}

/**
 * True when the lease carries containerd.io/gc.expire and now is past it. An unparsable value is
 * ignored (the lease stays a root), as containerd's GC logs and carries on.
 */
export function isLeaseExpired(lease: Pick<Lease, "labels">, now: Date): boolean {
  const value = Object.prototype.hasOwnProperty.call(lease.labels, gcExpireLabel)
    ? lease.labels[gcExpireLabel]
    : undefined;
  if (value === undefined) return false;
  const expires = parseRFC3339(value);
  return expires !== undefined && now.getTime() > expires.getTime();
}

/**
 * A fresh lease id in the shape containerd's WithRandomID makes ("<nanoseconds>-<4 base64url
 * chars>"), for a Create request that names none.
 */
export function randomLeaseId(now: Date = new Date()): string {
  const nanos = now.getUTCMilliseconds() * 1_000_000 + randomInt(1_000_000);
  return `${nanos}-${randomBytes(3).toString("base64url")}`;
}

interface LeaseRow {
  id: string;
  labels: string;
  created_at: number;
}

function fromRow(row: LeaseRow): Lease {
  return { id: row.id, labels: decodeStringMap(row.labels), createdAt: new Date(row.created_at) };
}

export function createLeaseManager(db: MetadataDB, opts: StoreOptions = {}): LeaseManager {
  const now = opts.now ?? (() => new Date());
  const mutated = (deletion: boolean) => opts.onMutation?.({ deletion });

  const selectOne = db.prepare<[string, string], LeaseRow>(
    "SELECT id, labels, created_at FROM leases WHERE namespace = ? AND id = ?",
  );
  const selectAll = db.prepare<[string], LeaseRow>(
    "SELECT id, labels, created_at FROM leases WHERE namespace = ? ORDER BY id",
  );
  const insert = db.prepare<[string, string, string, number]>(
    "INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
  );
  const remove = db.prepare<[string, string]>("DELETE FROM leases WHERE namespace = ? AND id = ?");
  const removeResources = db.prepare<[string, string]>(
    "DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?",
  );
  const insertResource = db.prepare<[string, string, string, string]>(
    "INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, id) VALUES (?, ?, ?, ?)",
  );
  const removeResource = db.prepare<[string, string, string, string]>(
    "DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ? AND type = ? AND id = ?",
  );
  const selectResources = db.prepare<[string, string], LeaseResource>(
    `SELECT id, type FROM lease_resources WHERE namespace = ? AND lease_id = ?
     ORDER BY CASE WHEN type = 'content' THEN 0 WHEN type = 'ingests' THEN 1 ELSE 2 END, type, id`,
  );

  const requireLease = (namespace: string, id: string) => {
    if (selectOne.get(namespace, id) === undefined) throw notFound(`lease ${quote(id)}`);
  };

  const createTx = db.transaction((namespace: string, id: string, labels: Record<string, string>): Lease => {
    const t = now();
    ensureNamespace(db, namespace, t.getTime());
    if (selectOne.get(namespace, id) !== undefined) throw alreadyExists(`lease ${quote(id)}`);
    const stored = encodeStringMap(labels);
    insert.run(namespace, id, stored, t.getTime());
    return { id, labels: decodeStringMap(stored), createdAt: t };
  });

  const deleteTx = db.transaction((namespace: string, id: string): void => {
    if (remove.run(namespace, id).changes === 0) throw notFound(`lease ${quote(id)}`);
    removeResources.run(namespace, id);
  });

  const addTx = db.transaction((namespace: string, leaseId: string, resource: LeaseResource): void => {
    // containerd looks the lease up before it parses the resource.
    requireLease(namespace, leaseId);
    const type = validateLeaseResource(resource.type, resource.id);
    ensureNamespace(db, namespace, now().getTime());
    insertResource.run(namespace, leaseId, type, resource.id);
  });

  const deleteResourceTx = db.transaction(
    (namespace: string, leaseId: string, resource: LeaseResource): void => {
      requireLease(namespace, leaseId);
      const type = validateLeaseResource(resource.type, resource.id);
      removeResource.run(namespace, leaseId, type, resource.id);
    },
  );

  return {
    create(ctx, lease) {
      const namespace = requireNamespace(ctx);
      if (lease.id === "") throw invalidArgument("lease id must be provided");
      // containerd checks no label sizes on leases, but its write still refuses an empty key.
      for (const [k, v] of Object.entries(lease.labels ?? {})) if (k === "") validateLabel(k, v);
      const created = createTx(namespace, lease.id, lease.labels ?? {});
      mutated(false);
      return created;
    },
    delete(ctx, id) {
      deleteTx(requireNamespace(ctx), id);
      mutated(true);
    },
    list(ctx, filters = []) {
      const namespace = requireNamespace(ctx);
      const filter = parseFilters(filters);
      return selectAll
        .all(namespace)
        .map(fromRow)
        .filter((l) => filter.match(leaseAdaptor(l)));
    },
    addResource(ctx, leaseId, resource) {
      addTx(requireNamespace(ctx), leaseId, resource);
      mutated(false);
    },
    deleteResource(ctx, leaseId, resource) {
      deleteResourceTx(requireNamespace(ctx), leaseId, resource);
      mutated(true);
    },
    listResources(ctx, leaseId) {
      const namespace = requireNamespace(ctx);
      requireLease(namespace, leaseId);
      return selectResources.all(namespace, leaseId).map((r) => ({ id: r.id, type: r.type }));
    },
  };
}
