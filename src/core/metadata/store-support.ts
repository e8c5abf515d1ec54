// Plumbing shared by the namespaced metadata stores: their options, the namespace requirement and
// containerd's error prefixes ("image.Labels: ...", "create container failed validation: ...").
import { BerthError, failedPrecondition } from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import { LabelWriteError, validateLabels } from "../labels/labels.js";

export interface StoreOptions {
  /** Clock for createdAt/updatedAt; tests inject a fixed one. */
  now?: () => Date;
  /**
   * Called after every committed write; deletion is true when the write removed something that
   * may leave garbage behind (containerd's db.dirty), so the GC scheduler can count both.
   */
  onMutation?: (event: { deletion: boolean }) => void;
}

/** The request's namespace; FailedPrecondition as containerd's NamespaceRequired when it is missing. */
export function requireNamespace(ctx: RequestContext): string {
  if (!ctx.namespace) throw failedPrecondition("namespace is required");
  return ctx.namespace;
}

/** Runs fn, re-throwing its BerthError with containerd's errors.Wrap prefix and the same code. */
export function withPrefix<T>(prefix: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof LabelWriteError) throw err; // a write failure, not a validation one: no prefix
    if (err instanceof BerthError)
      throw new BerthError(err.code, `${prefix}: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * validateLabels with the record's field name in front, e.g. "image.Labels"; an empty key fails
 * as containerd's write does, behind writePrefix (e.g. `writing labels for image x`).
 */
export function validateLabelsOf(
  field: string,
  labels: Record<string, string> | undefined,
  writePrefix?: string,
): void {
  try {
    withPrefix(field, () => validateLabels(labels));
  } catch (err) {
    if (err instanceof LabelWriteError && writePrefix)
      throw new LabelWriteError(err.code, `${writePrefix}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Go's %q for the messages clients print verbatim (identical for printable strings). */
export function quote(s: string): string {
  return JSON.stringify(s);
}
