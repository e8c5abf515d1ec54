// The gzip layer Diff.Apply is timed with: a realistic mix, built in memory and deterministically
// for a given size and seed. A quarter of the bytes are many small text files (most under 4 KiB,
// a few symlinks among them), a quarter medium "binaries" (zero pages, random pages and text:
// compress about 2x), a quarter big text files (about 3.5x) and a quarter big incompressible files
// (like the archives and media that images carry). gzip level 6, as Go's and Docker's default.
import { createCipheriv, createHash } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { tarStream, type StreamTarEntry } from "../test/fixtures/tar-writer.js";

export type ContentKind = "text" | "binary" | "random";

export type PlannedEntry =
  | { type: "dir"; path: string }
  | { type: "file"; path: string; size: number; kind: ContentKind }
  | { type: "symlink"; path: string; linkname: string };

export interface LayerPlan {
  /** In archive order: every directory before what it holds. */
  entries: PlannedEntry[];
  /** Bytes of file content (the tar adds headers and padding). */
  contentBytes: number;
  files: number;
  smallFiles: number;
  bytesByKind: Record<ContentKind, number>;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
/** Small files are at most this big; their sizes are skewed towards 0 (mean a quarter of it). */
export const MAX_SMALL_FILE = 16 * KiB;
/** Files per directory of small files. */
export const SMALL_FILES_PER_DIR = 128;
/** One small file in this many gets a symlink next to it. */
const SYMLINK_EVERY = 64;

/** mulberry32: a tiny deterministic PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Splits total into n sizes that add up to it exactly (the first takes the remainder). */
function split(total: number, n: number): number[] {
  const each = Math.floor(total / n);
  return Array.from({ length: n }, (_, i) => each + (i === 0 ? total - each * n : 0));
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0");

/** Which files the layer holds, how big, and of what kind. Pure: the same inputs, the same plan. */
export function planApplyLayer(totalBytes: number, seed = 1): LayerPlan {
  if (!(Number.isSafeInteger(totalBytes) && totalBytes >= 4 * KiB)) {
    throw new RangeError(`planApplyLayer: total must be an integer of at least 4 KiB, not ${totalBytes}`);
  }
  const rnd = prng(seed);
  const quarter = Math.floor(totalBytes / 4);
  const smallTotal = totalBytes - 3 * quarter;

  const small: number[] = [];
  for (let left = smallTotal; left > 0; ) {
    const s = Math.min(left, Math.floor(rnd() ** 3 * (MAX_SMALL_FILE + 1)));
    small.push(s);
    left -= s;
  }
  const medium: number[] = [];
  for (let left = quarter; left > 0; ) {
    const s = Math.min(left, 256 * KiB + Math.floor(rnd() * (4 * MiB - 256 * KiB)));
    medium.push(s);
    left -= s;
  }
  const bigText = split(quarter, 2);
  const bigRandom = split(quarter, 2);

  const entries: PlannedEntry[] = [];
  const dir = (path: string): void => void entries.push({ type: "dir", path });
  const file = (path: string, size: number, kind: ContentKind): void =>
    void entries.push({ type: "file", path, size, kind });

  dir("opt");
  dir("opt/bench");
  bigText.forEach((size, i) => file(`opt/bench/data-${i}.txt`, size, "text"));
  bigRandom.forEach((size, i) => file(`opt/bench/archive-${i}.bin`, size, "random"));
  dir("usr");
  dir("usr/lib");
  dir("usr/lib/bench");
  medium.forEach((size, i) => file(`usr/lib/bench/lib${pad(i, 4)}.so`, size, "binary"));
  dir("usr/share");
  dir("usr/share/bench");
  const width = Math.max(6, String(small.length).length);
  for (let i = 0; i < small.length; i++) {
    const d = `usr/share/bench/${pad(Math.floor(i / SMALL_FILES_PER_DIR), 4)}`;
    if (i % SMALL_FILES_PER_DIR === 0) dir(d);
    const name = `file-${pad(i, width)}.txt`;
    file(`${d}/${name}`, small[i] ?? 0, "text");
    if (i % SYMLINK_EVERY === 0)
      entries.push({ type: "symlink", path: `${d}/link-${pad(i, width)}`, linkname: name });
  }

  const bytesByKind: Record<ContentKind, number> = { text: 0, binary: 0, random: 0 };
  let files = 0;
  for (const e of entries) {
    if (e.type !== "file") continue;
    bytesByKind[e.kind] += e.size;
    files++;
  }
  return { entries, contentBytes: totalBytes, files, smallFiles: small.length, bytesByKind };
}

/** 4 MiB of text-like bytes: words from a skewed 512-word vocabulary, with newlines. */
function textPool(seed: number): Buffer {
  const rnd = prng(seed ^ 0x7e47);
  const vocab: string[] = [];
  for (let i = 0; i < 512; i++) {
    let w = "";
    const len = 2 + Math.floor(rnd() * 9);
    for (let j = 0; j < len; j++) w += String.fromCharCode(97 + Math.floor(rnd() * 26));
    vocab.push(w);
  }
  const parts: string[] = [];
  for (let n = 0; n < 4 * MiB; ) {
    const word = vocab[Math.floor(rnd() ** 3 * vocab.length)] ?? "x";
    parts.push(word, rnd() < 0.08 ? "\n" : " ");
    n += word.length + 1;
  }
  return Buffer.from(parts.join("")).subarray(0, 4 * MiB);
}

/** Deterministic incompressible bytes: AES-128-CTR over zeros, keyed by the seed. */
function randomStream(seed: number): (n: number) => Buffer {
  const key = createHash("sha256").update(`berth-bench-${seed}`).digest();
  const cipher = createCipheriv("aes-128-ctr", key.subarray(0, 16), key.subarray(16, 32));
  return (n) => cipher.update(Buffer.alloc(n));
}

const PAGE = 4 * KiB;

/** The content of one file, in chunks of at most 1 MiB. */
function* fileChunks(
  size: number,
  kind: ContentKind,
  rnd: () => number,
  pool: Buffer,
  random: (n: number) => Buffer,
): Generator<Buffer> {
  for (let left = size; left > 0; ) {
    const n = Math.min(left, MiB);
    left -= n;
    if (kind === "random") {
      yield random(n);
      continue;
    }
    const chunk = Buffer.allocUnsafe(n);
    for (let filled = 0; filled < n; ) {
      const len =
        kind === "text"
          ? Math.min(n - filled, 4 * KiB + Math.floor(rnd() * 60 * KiB))
          : Math.min(n - filled, PAGE);
      const what = kind === "text" ? 1 : rnd();
      if (what < 0.2) chunk.fill(0, filled, filled + len);
      else if (what < 0.6) random(len).copy(chunk, filled);
      else {
        const from = Math.floor(rnd() * (pool.length - len));
        pool.copy(chunk, filled, from, from + len);
      }
      filled += len;
    }
    yield chunk;
  }
}

export interface ApplyLayer {
  /** The gzip blob, held in memory. */
  gzip: Buffer;
  /** "sha256:..." of the gzip bytes: the blob digest. */
  digest: string;
  /** "sha256:..." of the tar: what Diff.Apply must answer. */
  diffId: string;
  mediaType: string;
  tarSize: number;
  plan: LayerPlan;
  generationMs: number;
}

export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";

/** Builds the planned layer: tar, gzip (level 6) and both digests in one pass. */
export async function buildApplyLayer(totalBytes: number, seed = 1): Promise<ApplyLayer> {
  const started = performance.now();
  const plan = planApplyLayer(totalBytes, seed);
  const rnd = prng(seed ^ 0xc0ffee);
  const pool = textPool(seed);
  const random = randomStream(seed);

  function* entries(): Generator<StreamTarEntry> {
    for (const e of plan.entries) {
      if (e.type === "file") {
        yield {
          path: e.path,
          type: "file",
          size: e.size,
          chunks: fileChunks(e.size, e.kind, rnd, pool, random),
        };
      } else yield e;
    }
  }

  const tarHash = createHash("sha256");
  const gzHash = createHash("sha256");
  const gz: Buffer[] = [];
  let tarSize = 0;
  await pipeline(
    tarStream(entries()),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        tarHash.update(chunk);
        tarSize += chunk.length;
        yield chunk;
      }
    },
    createGzip({ level: 6, chunkSize: 256 * KiB }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        gzHash.update(chunk);
        gz.push(chunk);
      }
    },
  );
  return {
    gzip: Buffer.concat(gz),
    digest: `sha256:${gzHash.digest("hex")}`,
    diffId: `sha256:${tarHash.digest("hex")}`,
    mediaType: LAYER_MEDIA_TYPE,
    tarSize,
    plan,
    generationMs: Math.round(performance.now() - started),
  };
}
