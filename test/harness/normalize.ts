// Normalises ctr output so that berthd's and containerd's can be compared: every value that
// legitimately differs between two daemons or two runs becomes a placeholder.

/** RFC3339 / RFC3339Nano, as in `leases ls`, `containers info` and ctr's logrus lines. */
const RFC3339 = /\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g;
/** Go's time.Time.String(), as `ctr events` prints it: "2026-11-22 14:04:12.595611 +0000 UTC". */
const GO_TIME = /\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? [+-]\d{4} [A-Z]{3,5}\b/g;
/** go-units HumanDuration, as in `content ls` AGE (with an optional " ago"). */
const AGE =
  /\b(?:Less than a second|About a minute|About an hour|\d+ (?:seconds?|minutes|hours|days|weeks|months|years))(?: ago)?\b/g;
const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;
/**
 * containerd's random ids (`leases.WithRandomID`, unpack keys "extract-<id> <chainID>"):
 * the nanosecond part of the clock (1-9 digits), "-", 4 base64url characters.
 */
const RANDOM_ID = /(?<=^|[^\w-]|extract-)\d{1,9}-[A-Za-z0-9_-]{4}(?![\w-])/g;
/** Paths of harness temp dirs (socket dirs, roots, fifo dirs), which differ per daemon. */
const TEMP_PATH = /\/tmp\/berth-test-[^/\s"',]+/g;

export function normalizeTimestamps(text: string): string {
  return text.replace(GO_TIME, "<TIME>").replace(RFC3339, "<TIME>");
}

export function normalizeAges(text: string): string {
  return text.replace(AGE, "<AGE>");
}

export function normalizeUuids(text: string): string {
  return text.replace(UUID, "<UUID>");
}

/** Run after normalizeTimestamps, so that dates cannot look like ids. */
export function normalizeRandomIds(text: string): string {
  return text.replace(RANDOM_ID, "<ID>");
}

export function normalizeTempPaths(text: string): string {
  return text.replace(TEMP_PATH, "<TMP>");
}

/** Process ids: `"pid":123` in JSON event payloads and the PID column of `tasks ls`. */
export function normalizePids(text: string): string {
  return (
    text
      .replace(/"pid":\d+/g, '"pid":<PID>')
      .split("\n")
      .map((line) =>
        line.replace(/^(\S+\s+)\d+(\s+(?:RUNNING|STOPPED|CREATED|PAUSED|PAUSING|UNKNOWN)\b)/, "$1<PID>$2"),
      )
      .join("\n")
      // ctr's tabwriter pads columns to their widest cell, so a pid with one more digit widens the
      // whole table: padding is compared as "two or more spaces".
      .replace(/ {2,}/g, "  ")
  );
}

/**
 * ctr prints label maps as "k1=v1,k2=v2" in Go map order, which is random per call. Sorts the
 * pairs of every whitespace-free token that looks like such a list. (Values containing "," would
 * be split too; fixtures avoid them.)
 */
export function sortLabelLists(text: string): string {
  return text.replace(/(?<=^|\s)[^\s=,]+=[^\s,]*(?:,[^\s=,]+=[^\s,]*)+(?=\s|$)/gm, (list) =>
    list.split(",").sort().join(","),
  );
}

/**
 * ctr's tables come from tabwriter, so column widths (and spaces vs tabs) depend on the widest
 * value. Collapses every run of spaces/tabs to one space and trims each line.
 */
export function collapseSpaces(text: string): string {
  return text
    .split("\n")
    .map((line) => line.replace(/[ \t]+/g, " ").trim())
    .join("\n");
}

/** Sorts the lines below the first (header) line; for outputs whose row order is not defined. */
export function sortRows(text: string, opts: { header?: boolean } = {}): string {
  const lines = text.replace(/\n$/, "").split("\n");
  const head = opts.header === false ? [] : lines.splice(0, 1);
  return [...head, ...lines.sort()].join("\n") + "\n";
}

export interface NormalizeOptions {
  /** Also replace process ids (default false: pids are rarely in compared output). */
  pids?: boolean;
}

/** The usual pipeline: timestamps, ages, UUIDs, random ids, temp paths, label order, spacing. */
export function normalizeCtrOutput(text: string, opts: NormalizeOptions = {}): string {
  let out = normalizeTimestamps(text);
  out = normalizeAges(out);
  out = normalizeUuids(out);
  out = normalizeRandomIds(out);
  out = normalizeTempPaths(out);
  if (opts.pids) out = normalizePids(out);
  out = sortLabelLists(out);
  return collapseSpaces(out);
}
