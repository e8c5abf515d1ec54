// Unpack-ahead: a layer is unpacked as soon as its blob is in the content store, before anyone asks,
// into a staging directory. The Diff.Apply that then asks for it onto an empty overlayfs snapshot
// takes the staged tree with one rename instead of unpacking it then.
//
// Why: `ctr images pull` (like containerd's client unpacker, CRI's and Docker's) fetches every blob
// first and only then prepares, applies and commits each layer in turn. Between the two the daemon
// idles (ctr alone waits up to 100 ms for its progress ticker), and every layer's apply is on the
// pull's critical path.
//
// What triggers it: a manifest committed into a namespace names its layers. Each of them that is
// committed into the same namespace afterwards (written, or linked from another namespace) is
// staged: the bottom one as on a bind mount (whiteouts delete, as on the bottom snapshot), the
// others as on an overlay upper dir (whiteouts become devices). A layer the namespace already had
// when its manifest came is most likely unpacked there already, and is left alone.
//
// When a staged tree is used: a Diff.Apply of the same blob, in the same whiteout mode, onto an empty
// directory without xattrs that is an overlayfs snapshot's own dir (`<snapshots>/<id>/fs`). Staging
// had no parent layers to look at, so the directories the apply created only as parents of entries
// (implied, see apply-tar.ts) take their attributes from the Apply's parent layers then, as the
// apply would have given them (their modification time too, unless entries were made in them
// since). When a parent's directory would have left a mark the staged tree lacks (a set-group-ID
// bit or a default ACL, which shape what is created inside; xattrs, on a directory the layer names
// after an entry implied it), or the implied lists are not exact, the staged tree is dropped and
// the layer applied as usual. Anything else (another target, a digest or diffID that does not
// match) takes the usual path too: a claim never answers what the apply would not have.
//
// Bounds: one layer at a time, in the differ's worker pool (the same limits on entries and bytes);
// only layers up to maxBytes compressed, while the staged trees hold less than maxBytes (counted
// compressed until staged, then as unpacked) and the file system keeps room to spare; one unused
// for ttlMs is removed. Staging is off when the staging dir and the snapshots are on different file
// systems, or the snapshots dir has xattrs (an SELinux label, which staged files would not get).
// Each daemon run stages in its own directory and removes those of earlier runs.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  lstatSync,
  mkdirSync,
  opendirSync,
  openSync,
  readSync,
  readdirSync,
  realpathSync,
  renameSync,
  statSync,
  statfsSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { AT, O, close, flistxattr, openat, openInRoot } from "../../sys/fs-at.js";
import { hasCode } from "../../sys/errno.js";
import type { ApplyJob, ApplyResult } from "./apply-job.js";
import { copyParentDirInfo, parentDirInfluence } from "./apply-tar.js";
import { layerCompression, type Compression } from "./decompress.js";
import type { WorkerPool } from "./worker-pool.js";

export type UnpackAheadOutcome = "staged" | "claimed" | "unused" | "failed" | "dropped";

export interface UnpackAheadOptions {
  /** Where trees are staged: on the same file system as the snapshots, mode 0700. */
  dir: string;
  /** overlayfs `snapshots` directories: a claim's target must be `<one of them>/<id>/fs`. */
  snapshotDirs: string[];
  pool: WorkerPool;
  blobPath: (digest: string) => string;
  /** Whether namespace already holds the blob. */
  has: (namespace: string, digest: string) => boolean;
  maxLayerBytes: number;
  maxLayerEntries: number;
  /** Bytes of compressed blobs staged (or being staged) at most at once; 1 GiB by default. */
  maxBytes?: number;
  /** How long an unused staged tree is kept; 3 minutes by default. */
  ttlMs?: number;
  /** Each layer's fate, for metrics. */
  onOutcome?: (outcome: UnpackAheadOutcome) => void;
  onError?: (err: unknown, what: string) => void;
}

export interface UnpackAhead {
  /** A blob was committed into namespace (the content store calls this). */
  committed(namespace: string, digest: string, size: number): void;
  /**
   * The staged tree for job moved into job.root, and what the apply would have answered; undefined
   * when there is none to use (the caller applies the layer itself).
   */
  claim(job: ApplyJob, signal?: AbortSignal): Promise<ApplyResult | undefined>;
  /** Layers staged or being staged now (for tests and introspection). */
  readonly staged: number;
  close(): Promise<void>;
}

type Mode = ApplyJob["whiteouts"];

interface Wanted {
  compression: Compression;
  mode: Mode;
  size: number;
  /** The layer's place in its manifest: layers are applied bottom first, so staged so too. */
  index: number;
  until: number;
}

interface Staged {
  key: string;
  digest: string;
  size: number;
  compression: Compression;
  mode: Mode;
  index: number;
  /** What it counts against maxBytes: the blob's size until staged, then the bytes it unpacked to. */
  cost: number;
  root: string;
  state: "queued" | "running" | "ready";
  result?: ApplyResult;
  /** Settles when the staging job has ended, either way. */
  done: Promise<void>;
  settle: () => void;
  abort: AbortController;
  timer?: NodeJS.Timeout;
}

/** Manifests larger than this are not looked at. */
const MAX_MANIFEST = 1 << 20;
/** Layers waiting for their blob, at most (manifests written by the thousand stage nothing more). */
const MAX_WANTED = 10_000;
/** Implied directories a claim fixes up at most (it runs on the event loop). */
const MAX_CLAIM_FIXUPS = 1024;
const MANIFEST_TYPES = new Set([
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
]);
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function createUnpackAhead(opts: UnpackAheadOptions): UnpackAhead {
  const maxBytes = opts.maxBytes ?? 2 ** 30;
  const ttlMs = opts.ttlMs ?? 3 * 60_000;
  const run = join(opts.dir, `run-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  chmodSync(opts.dir, 0o700);
  for (const old of readdirSync(opts.dir)) {
    rm(join(opts.dir, old), { recursive: true, force: true }).catch((err: unknown) =>
      opts.onError?.(err, `removing ${old} of an earlier run`),
    );
  }
  mkdirSync(run, { mode: 0o700 });
  const off = stagingUnusable(run, opts.snapshotDirs);
  if (off !== undefined) opts.onError?.(new Error(off), "unpack-ahead is off");

  /** Layers of manifests committed lately, by namespace and digest, waiting for their blob. */
  const wanted = new Map<string, Wanted>();
  const staged = new Map<string, Staged>();
  const queue: Staged[] = [];
  let bytes = 0;
  let running = false;
  let closed = off !== undefined;

  const keyOf = (digest: string, mode: Mode): string => `${digest} ${mode}`;

  /**
   * Whether the file system can take a layer of size compressed bytes, staged, and still keep room
   * for snapshots: 1 GiB free beyond four times the blob.
   */
  function roomFor(size: number): boolean {
    try {
      const st = statfsSync(run);
      const free = st.bavail * st.bsize;
      return free - 4 * size >= 2 ** 30;
    } catch {
      return false;
    }
  }

  function sweepWanted(now: number): void {
    for (const [k, w] of wanted) if (w.until <= now) wanted.delete(k);
  }

  function manifestLayers(
    digest: string,
    size: number,
  ): { digest: string; compression: Compression; size: number }[] {
    if (size > MAX_MANIFEST || size < 2) return [];
    let parsed: unknown;
    try {
      const text = readJsonObject(opts.blobPath(digest), size);
      if (text === undefined) return [];
      parsed = JSON.parse(text);
    } catch {
      return [];
    }
    const m = parsed as { mediaType?: unknown; schemaVersion?: unknown; layers?: unknown; config?: unknown };
    if (m.schemaVersion !== 2 || !Array.isArray(m.layers) || typeof m.config !== "object") return [];
    if (m.mediaType !== undefined && !(typeof m.mediaType === "string" && MANIFEST_TYPES.has(m.mediaType)))
      return [];
    const out: { digest: string; compression: Compression; size: number }[] = [];
    for (const l of m.layers as unknown[]) {
      if (typeof l !== "object" || l === null) return [];
      const d = l as { mediaType?: unknown; digest?: unknown; size?: unknown };
      if (typeof d.mediaType !== "string") return [];
      if (typeof d.digest !== "string" || !DIGEST.test(d.digest)) return [];
      if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) return [];
      let compression: Compression;
      try {
        compression = layerCompression(d.mediaType);
      } catch {
        return []; // not a layer we apply (foreign or unknown): the image is not for us to guess at
      }
      out.push({ digest: d.digest, compression, size: d.size });
    }
    return out;
  }

  function committed(namespace: string, digest: string, size: number): void {
    if (closed) return;
    try {
      noteCommitted(namespace, digest, size);
    } catch (err) {
      opts.onError?.(err, `looking at ${digest}`);
    }
  }

  function noteCommitted(namespace: string, digest: string, size: number): void {
    const now = Date.now();
    sweepWanted(now);
    const w = wanted.get(`${namespace} ${digest}`);
    if (w !== undefined) {
      wanted.delete(`${namespace} ${digest}`);
      if (w.size === size) stage(digest, size, w);
      return;
    }
    const layers = manifestLayers(digest, size);
    layers.forEach((l, i) => {
      if (wanted.size >= MAX_WANTED || opts.has(namespace, l.digest)) return;
      wanted.set(`${namespace} ${l.digest}`, {
        compression: l.compression,
        mode: i === 0 ? "delete" : "overlay",
        size: l.size,
        index: i,
        until: now + ttlMs,
      });
    });
  }

  function stage(digest: string, size: number, { compression, mode, index }: Wanted): void {
    const key = keyOf(digest, mode);
    if (staged.has(key)) return;
    if (size > opts.maxLayerBytes || size > maxBytes || bytes + size > maxBytes) return;
    if (!roomFor(size)) return;
    let settle = (): void => undefined;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const s: Staged = {
      key,
      digest,
      size,
      compression,
      mode,
      index,
      cost: size,
      root: join(run, randomBytes(8).toString("hex")),
      state: "queued",
      done,
      settle,
      abort: new AbortController(),
    };
    staged.set(key, s);
    bytes += size;
    queue.push(s);
    pump();
  }

  /** Forgets s and removes its tree (in the background). */
  function drop(s: Staged, outcome: UnpackAheadOutcome): void {
    if (staged.get(s.key) === s) staged.delete(s.key);
    const q = queue.indexOf(s);
    if (q !== -1) queue.splice(q, 1);
    bytes -= s.cost;
    clearTimeout(s.timer);
    s.abort.abort();
    opts.onOutcome?.(outcome);
    if (s.state === "queued") {
      s.settle();
      return;
    }
    // A running job is aborted: its worker is terminated, then the tree can go.
    void s.done.then(() =>
      rm(s.root, { recursive: true, force: true }).catch((err: unknown) =>
        opts.onError?.(err, `removing the staged tree of ${s.digest}`),
      ),
    );
  }

  /** Starts the next queued layer (the lowest in its manifest first) unless one is running. */
  function pump(): void {
    if (running || closed || queue.length === 0) return;
    let next = 0;
    for (let i = 1; i < queue.length; i++) if (queue[i]!.index < queue[next]!.index) next = i;
    const s = queue.splice(next, 1)[0]!;
    running = true;
    start(s, () => {
      running = false;
      pump();
    });
  }

  function start(s: Staged, then: () => void): void {
    s.state = "running";
    void stageOne(s).finally(() => {
      s.settle();
      then();
    });
  }

  async function stageOne(s: Staged): Promise<void> {
    try {
      mkdirSync(s.root, { mode: 0o755 });
      chmodSync(s.root, 0o755);
      const job: ApplyJob = {
        blobPath: opts.blobPath(s.digest),
        digest: s.digest,
        size: s.size,
        compression: s.compression,
        root: s.root,
        whiteouts: s.mode,
        parents: [],
        maxBytes: opts.maxLayerBytes,
        maxEntries: opts.maxLayerEntries,
        trackImplied: true,
      };
      const result = await opts.pool.run<ApplyResult>("apply", job, s.abort.signal);
      if (staged.get(s.key) !== s) return; // dropped meanwhile: drop() removes the tree
      s.result = result;
      s.state = "ready";
      bytes += result.bytes - s.cost;
      s.cost = result.bytes;
      opts.onOutcome?.("staged");
      if (bytes > maxBytes) {
        // It unpacked to more than there is room for.
        drop(s, "dropped");
        return;
      }
      s.timer = setTimeout(() => drop(s, "unused"), ttlMs);
      s.timer.unref();
    } catch (err) {
      if (staged.get(s.key) !== s) return;
      // The layer is bad or the disk is: the Apply that comes for it finds out the usual way.
      staged.delete(s.key);
      bytes -= s.cost;
      await rm(s.root, { recursive: true, force: true }).catch((e: unknown) =>
        opts.onError?.(e, `removing the staged tree of ${s.digest}`),
      );
      opts.onOutcome?.("failed");
      if (!s.abort.signal.aborted) opts.onError?.(err, `staging ${s.digest}`);
    }
  }

  async function claim(job: ApplyJob, signal?: AbortSignal): Promise<ApplyResult | undefined> {
    if (job.root === undefined) return undefined;
    const key = keyOf(job.digest, job.whiteouts);
    let s = staged.get(key);
    if (s === undefined || s.size !== job.size || s.compression !== job.compression) return undefined;
    // Looked at first: a target that cannot take the tree should not wait for it.
    if (claimTarget(job.root, opts.snapshotDirs) === undefined) return undefined;
    if (s.state === "queued") {
      // Asked for before its turn: it starts now, beside the one running (as an apply would).
      queue.splice(queue.indexOf(s), 1);
      start(s, () => undefined);
    }
    if (s.state === "running") {
      await waitOrAbort(s.done, signal);
      s = staged.get(key);
      if (s?.state !== "ready" || signal?.aborted === true) return undefined;
    }
    const result = s.result!;
    if (job.expectedDiffId !== undefined && job.expectedDiffId !== result.diffId) return undefined;
    const target = claimTarget(job.root, opts.snapshotDirs);
    if (target === undefined) return undefined;
    const parentFds: number[] = [];
    try {
      // Without parent layers there is nothing to take from them: the staged tree is the apply's.
      const implied = job.parents.length > 0 ? result.implied : undefined;
      if (implied !== undefined) {
        const fixups = implied.dirs.length + implied.named.length;
        if (!implied.exact || fixups > MAX_CLAIM_FIXUPS) {
          drop(s, "dropped");
          return undefined;
        }
        if (fixups > 0) {
          let differs: boolean;
          try {
            for (const p of job.parents) parentFds.push(openat(AT.FDCWD, p, O.PATH | O.DIRECTORY));
            // What the apply would have inherited or copied there, this tree made without: dropped.
            differs =
              implied.dirs.some((d) => parentDirInfluence(parentFds, d.path).shapesChildren) ||
              implied.named.some((path) => {
                const i = parentDirInfluence(parentFds, path);
                return i.shapesChildren || i.copiesXattrs;
              });
          } catch {
            // Parents it cannot read: the usual apply says what is wrong with them, in its words.
            return undefined;
          }
          if (differs) {
            drop(s, "dropped");
            return undefined;
          }
        }
      }
      // Ours from here: whatever happens, the staged tree is not offered again.
      staged.delete(s.key);
      bytes -= s.cost;
      clearTimeout(s.timer);
      try {
        renameSync(s.root, target.path);
      } catch (err) {
        // Not empty after all, another file system, a mount point: the usual path it is.
        opts.onOutcome?.("dropped");
        void rm(s.root, { recursive: true, force: true }).catch((e: unknown) =>
          opts.onError?.(e, `removing the staged tree of ${s.digest}`),
        );
        if (!hasCode(err, "ENOTEMPTY") && !hasCode(err, "EXDEV") && !hasCode(err, "EBUSY"))
          opts.onError?.(err, `moving the staged tree of ${s.digest}`);
        return undefined;
      }
      const rootfd = openat(AT.FDCWD, target.path, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      try {
        // The target keeps what it was: an apply never changes the root directory itself.
        fchownSync(rootfd, target.uid, target.gid);
        fchmodSync(rootfd, target.mode);
        if (implied !== undefined) fixImplied(rootfd, implied.dirs, parentFds);
      } finally {
        close(rootfd);
      }
      opts.onOutcome?.("claimed");
      return { diffId: result.diffId, tarSize: result.tarSize, entries: result.entries, bytes: result.bytes };
    } finally {
      for (const fd of parentFds) close(fd);
    }
  }

  async function close_(): Promise<void> {
    closed = true;
    const all = [...staged.values()];
    for (const s of all) drop(s, s.state === "ready" ? "unused" : "dropped");
    await Promise.all(all.map((s) => s.done));
    await rm(run, { recursive: true, force: true });
  }

  return {
    committed,
    claim,
    get staged() {
      return staged.size;
    },
    close: close_,
  };
}

/** Why trees staged in dir could never be claimed by snapshots in snapshotDirs, if they could not. */
function stagingUnusable(dir: string, snapshotDirs: readonly string[]): string | undefined {
  const dev = statSync(dir).dev;
  for (const s of snapshotDirs) {
    let fd: number;
    try {
      if (statSync(s).dev !== dev) continue;
      fd = openat(AT.FDCWD, s, O.RDONLY | O.DIRECTORY);
    } catch {
      continue;
    }
    try {
      const keys = flistxattr(fd);
      if (keys.length === 0) return undefined;
      return `${s} has xattrs (${keys.join(", ")}), which staged trees would not have`;
    } finally {
      close(fd);
    }
  }
  return `no snapshots dir on the file system of ${dir}`;
}

/** The file's text when it starts like a JSON object ("{"), read only then. */
function readJsonObject(path: string, size: number): string | undefined {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(size);
    if (readSync(fd, buf, 0, 1, 0) !== 1 || buf[0] !== 0x7b /* { */) return undefined;
    let done = 1;
    while (done < size) {
      const n = readSync(fd, buf, done, size - done, done);
      if (n === 0) return undefined;
      done += n;
    }
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

function waitOrAbort(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = (): void => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    void p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/**
 * The claim's target when root is an empty, xattr-free directory `<snapshots>/<id>/fs` of one of
 * snapshotDirs, with what to give back to the directory that replaces it; undefined otherwise.
 */
export function claimTarget(
  root: string,
  snapshotDirs: readonly string[],
): { path: string; uid: number; gid: number; mode: number } | undefined {
  let path: string;
  try {
    path = realpathSync(root);
  } catch {
    return undefined;
  }
  const inside = snapshotDirs.some((dir) => {
    let real: string;
    try {
      real = realpathSync(dir); // the daemon's root may sit behind a symlink
    } catch {
      return false;
    }
    const parts = relative(real, path).split(sep);
    return parts.length === 2 && /^[0-9]+$/.test(parts[0]!) && parts[1] === "fs";
  });
  if (!inside) return undefined;
  let fd = -1;
  try {
    const st = lstatSync(path);
    if (!st.isDirectory()) return undefined;
    const dir = opendirSync(path);
    try {
      if (dir.readSync() !== null) return undefined;
    } finally {
      dir.closeSync();
    }
    fd = openat(AT.FDCWD, path, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    if (flistxattr(fd).length > 0) return undefined;
    return { path, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
  } catch {
    return undefined;
  } finally {
    if (fd !== -1) close(fd);
  }
}

/**
 * The implied directories of a claimed tree take their parents' attributes, as apply-tar gives
 * them; one that had entries made in it afterwards keeps the modification time that gave it.
 */
function fixImplied(
  rootfd: number,
  dirs: readonly { path: string; touched: boolean }[],
  parentFds: readonly number[],
): void {
  for (const { path, touched } of dirs) {
    let fd: number;
    try {
      fd = openInRoot(rootfd, path, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    } catch (err) {
      if (hasCode(err, "ENOENT") || hasCode(err, "ENOTDIR") || hasCode(err, "ELOOP")) continue;
      throw err;
    }
    try {
      copyParentDirInfo(parentFds, path, fd, touched);
    } finally {
      close(fd);
    }
  }
}
