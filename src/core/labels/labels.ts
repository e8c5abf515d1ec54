// Label validation as containerd does it: each key plus value at most 4096 bytes, keys non-empty.
import { BerthError, invalidArgument } from "../../errdefs/errors.js";

export const maxLabelSize = 4096;

/** The empty-key failure containerd reports from its database write (code Unknown), not from validation. */
export class LabelWriteError extends BerthError {}

export function validateLabel(key: string, value: string): void {
  // containerd's validation lets an empty key through and its database write then fails with
  // code Unknown; clients print that text, so it is reproduced here.
  if (key.length === 0)
    throw new LabelWriteError("unknown", `failed to set label ""=${JSON.stringify(value)}: key required`);
  const size = Buffer.byteLength(key) + Buffer.byteLength(value);
  if (size > maxLabelSize) {
    const shown = key.slice(0, 10);
    throw invalidArgument(
      `label key and value greater than maximum size (${maxLabelSize} bytes), key: ${shown}`,
    );
  }
}

export function validateLabels(labels: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(labels ?? {})) validateLabel(k, v);
}

/**
 * Applies a field-mask update to labels: with no paths the new labels replace the old ones;
 * "labels" replaces them; "labels.<k>" sets k (an empty value deletes it). Returns undefined for
 * paths that are not label paths so callers can reject or handle them.
 */
export function applyLabelPaths(
  current: Record<string, string>,
  next: Record<string, string>,
  paths: string[],
): { labels: Record<string, string>; unknown: string[] } {
  if (paths.length === 0) return { labels: { ...next }, unknown: [] };
  const labels = { ...current };
  const unknown: string[] = [];
  for (const path of paths) {
    if (path === "labels") {
      for (const k of Object.keys(labels)) delete labels[k];
      Object.assign(labels, next);
    } else if (path.startsWith("labels.")) {
      const key = path.slice("labels.".length);
      const value = next[key];
      if (value === undefined || value === "") delete labels[key];
      else labels[key] = value;
    } else unknown.push(path);
  }
  return { labels, unknown };
}
