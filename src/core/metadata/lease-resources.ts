// Lease resources: what a lease holds (content digests, ingest refs, snapshot keys), recorded in
// lease_resources. Stores call addLeaseResource inside their write transaction.
import { invalidArgument, notFound, notImplemented } from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import { isDigest } from "../content/digest.js";
import { cachedStatement, type MetadataDB } from "./db.js";

/** The resource types containerd 1.6 knows: "content", "ingests", "snapshots/<snapshotter>". */
export type LeaseResourceType = "content" | "ingests" | `snapshots/${string}`;

/**
 * Checks a resource as containerd's parseLeaseResource does: content ids must be digests,
 * "snapshots" needs exactly one snapshotter, anything else is not implemented.
 */
export function validateLeaseResource(type: string, id: string): LeaseResourceType {
  const parts = type.split("/");
  switch (parts[0]) {
    case "content":
    case "ingests":
      if (parts.length !== 1) throw invalidArgument(`invalid resource type ${type}`);
      if (parts[0] === "content" && !isDigest(id)) throw invalidArgument(`invalid content resource id ${id}`);
      if (id === "") throw invalidArgument(`invalid resource id for type ${type}`);
      return parts[0];
    case "snapshots":
      if (parts.length !== 2 || parts[1] === "")
        throw invalidArgument(`invalid snapshot resource type ${type}`);
      if (id === "") throw invalidArgument(`invalid resource id for type ${type}`);
      return `snapshots/${parts[1]}`;
    default:
      throw notImplemented(`resource type ${type} not supported yet`);
  }
}

/** True when the lease exists in the namespace. */
export function leaseExists(db: MetadataDB, namespace: string, lease: string): boolean {
  return (
    cachedStatement(db, "SELECT 1 FROM leases WHERE namespace = ? AND id = ?").get(namespace, lease) !==
    undefined
  );
}

/**
 * Records (namespace, ctx.lease, type, id) when the request carries a lease; a no-op otherwise.
 * Returns whether a lease holds the resource now. NotFound "lease does not exist" when the named
 * lease is missing, as containerd's addContentLease says. Call inside the caller's transaction.
 */
export function addLeaseResource(db: MetadataDB, ctx: RequestContext, type: string, id: string): boolean {
  const lease = ctx.lease;
  if (lease === undefined || lease === "") return false;
  const checked = validateLeaseResource(type, id);
  if (!leaseExists(db, ctx.namespace, lease)) throw notFound("lease does not exist");
  cachedStatement(
    db,
    "INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, id) VALUES (?, ?, ?, ?)",
  ).run(ctx.namespace, lease, checked, id);
  return true;
}

/** Drops (namespace, ctx.lease, type, id) if recorded; a no-op without a lease or a record. */
export function removeLeaseResource(db: MetadataDB, ctx: RequestContext, type: string, id: string): void {
  const lease = ctx.lease;
  if (lease === undefined || lease === "") return;
  cachedStatement(
    db,
    "DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ? AND type = ? AND id = ?",
  ).run(ctx.namespace, lease, type, id);
}
