// The behaviour every content store must show (the local backend, the namespaced metadata store
// over it, ...): node:test cases registered by runContentStoreConformance against a store factory.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import type { Store, Writer } from "./content.js";

/** The part of Store that every content store, the bare backend included, implements. */
export type ConformanceStore = Pick<
  Store,
  "info" | "read" | "writer" | "status" | "listStatuses" | "abort" | "delete" | "walk"
>;

export interface ConformanceSubject {
  store: ConformanceStore;
  /** Removes everything the subject created (including stores made by reopen). */
  cleanup: () => Promise<void>;
  /**
   * A fresh store instance over the same state, as after a daemon restart: the old instance is
   * abandoned, its writers never closed. Without it the crash-resume case is skipped.
   */
  reopen?: () => Promise<ConformanceStore>;
}

const MiB = 1 << 20;

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Deterministic, non-repeating-looking test bytes. */
function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function readAll(store: ConformanceStore, digest: string, offset = 0, length = 0): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.read(digest, offset, length)) parts.push(chunk);
  return Buffer.concat(parts);
}

async function writeAll(w: Writer, data: Uint8Array, chunk = 64 * 1024): Promise<void> {
  for (let i = 0; i < data.length; i += chunk) await w.write(data.subarray(i, i + chunk));
}

async function ingest(store: ConformanceStore, ref: string, data: Uint8Array): Promise<string> {
  const w = await store.writer({ ref, total: data.length, expected: digestOf(data) });
  try {
    await writeAll(w, data);
    return await w.commit(data.length, digestOf(data));
  } finally {
    await w.close();
  }
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, text?: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${String(err)}`);
    if (text !== undefined)
      assert.match((err as Error).message, typeof text === "string" ? new RegExp(escapeRe(text)) : text);
    return true;
  });
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function listDigests(store: ConformanceStore): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  await store.walk((info) => {
    seen.set(info.digest, info.size);
  });
  return seen;
}

export function runContentStoreConformance(name: string, makeStore: () => Promise<ConformanceSubject>): void {
  // Each case gets its own store and always cleans it up.
  const withStore = (fn: (s: ConformanceSubject) => Promise<void>) => async () => {
    const subject = await makeStore();
    try {
      await fn(subject);
    } finally {
      await subject.cleanup();
    }
  };

  void describe(`content store conformance: ${name}`, () => {
    void it(
      "writes, commits and reads back a blob",
      withStore(async ({ store }) => {
        const data = bytes(300_000);
        const w = await store.writer({ ref: "write-read" });
        assert.equal(w.ref, "write-read");
        assert.equal((await w.status()).offset, 0);
        assert.equal(w.digest(), digestOf(new Uint8Array(0)));
        let offset = 0;
        for (let i = 0; i < data.length; i += 100_000) {
          offset = await w.write(data.subarray(i, i + 100_000));
        }
        assert.equal(offset, data.length);
        assert.equal(w.digest(), digestOf(data));
        const committed = await w.commit(data.length, digestOf(data));
        assert.equal(committed, digestOf(data));
        await w.close();
        assert.deepEqual(await readAll(store, committed), data);
        await rejectsWith(store.status("write-read"), "not-found");
      }),
    );

    void it(
      "commits an empty blob",
      withStore(async ({ store }) => {
        const empty = new Uint8Array(0);
        const w = await store.writer({ ref: "empty" });
        const d = await w.commit(0, digestOf(empty));
        assert.equal(d, digestOf(empty));
        assert.equal((await store.info(d)).size, 0);
        assert.equal((await readAll(store, d)).length, 0);
      }),
    );

    void it(
      "commit without expectations returns the computed digest",
      withStore(async ({ store }) => {
        const data = bytes(1234, 7);
        const w = await store.writer({ ref: "no-expectations" });
        await w.write(data);
        assert.equal(await w.commit(0, ""), digestOf(data));
        assert.deepEqual(await readAll(store, digestOf(data)), data);
      }),
    );

    void it(
      "info reports size and times of a committed blob",
      withStore(async ({ store }) => {
        const data = bytes(4321, 2);
        const before = Date.now() - 2000;
        const d = await ingest(store, "info", data);
        const info = await store.info(d);
        assert.equal(info.digest, d);
        assert.equal(info.size, data.length);
        assert.ok(info.createdAt instanceof Date && info.createdAt.getTime() >= before);
        assert.ok(info.updatedAt instanceof Date && info.updatedAt.getTime() >= info.createdAt.getTime() - 1);
        assert.equal(typeof info.labels, "object");
      }),
    );

    void it(
      "reports the status of a live ingest",
      withStore(async ({ store }) => {
        const data = bytes(5000, 3);
        const expected = digestOf(data);
        const w = await store.writer({ ref: "status", total: data.length, expected });
        await w.write(data.subarray(0, 2000));
        const live = await w.status();
        assert.equal(live.ref, "status");
        assert.equal(live.offset, 2000);
        assert.equal(live.total, data.length);
        assert.equal(live.expected, expected);
        assert.ok(live.startedAt.getTime() <= live.updatedAt.getTime());
        const stored = await store.status("status");
        assert.equal(stored.ref, "status");
        assert.equal(stored.offset, 2000);
        assert.equal(stored.total, data.length);
        assert.equal(stored.expected, expected);
        await w.close();
        await rejectsWith(store.status("never-started"), "not-found");
      }),
    );

    void it(
      "resumes an ingest after close",
      withStore(async ({ store }) => {
        const data = bytes(200_000, 4);
        const half = 80_000;
        const w1 = await store.writer({ ref: "resume", total: data.length });
        await writeAll(w1, data.subarray(0, half));
        await w1.close();

        const w2 = await store.writer({ ref: "resume", total: data.length });
        const st = await w2.status();
        assert.equal(st.offset, half);
        assert.equal(st.total, data.length);
        assert.equal(w2.digest(), digestOf(data.subarray(0, half)));
        await writeAll(w2, data.subarray(half));
        assert.equal(await w2.commit(data.length, digestOf(data)), digestOf(data));
        assert.deepEqual(await readAll(store, digestOf(data)), data);
      }),
    );

    void it("resumes an ingest after a simulated crash", async (t) => {
      const subject = await makeStore();
      try {
        if (subject.reopen === undefined) {
          t.skip("the subject provides no reopen()");
          return;
        }
        const data = bytes(150_000, 5);
        const half = 70_000;
        const crashed = await subject.store.writer({ ref: "crash", total: data.length });
        await writeAll(crashed, data.subarray(0, half));
        // The old instance is abandoned with its writer still open, as a killed daemon would be.
        const store = await subject.reopen();
        const w = await store.writer({ ref: "crash", total: data.length });
        assert.equal((await w.status()).offset, half);
        assert.equal(w.digest(), digestOf(data.subarray(0, half)));
        await writeAll(w, data.subarray(half));
        assert.equal(await w.commit(data.length, digestOf(data)), digestOf(data));
        assert.deepEqual(await readAll(store, digestOf(data)), data);
        await crashed.close().catch(() => undefined);
      } finally {
        await subject.cleanup();
      }
    });

    void it(
      "commit with the wrong size fails and leaves no blob",
      withStore(async ({ store }) => {
        const data = bytes(1000, 6);
        const w = await store.writer({ ref: "bad-size" });
        await w.write(data);
        await rejectsWith(
          w.commit(data.length + 1, digestOf(data)),
          "failed-precondition",
          // The wording differs by layer (backend vs metadata, as in containerd); both name the sizes.
          new RegExp(`${data.length}\\D+${data.length + 1}`),
        );
        await w.close();
        await rejectsWith(store.info(digestOf(data)), "not-found");
        assert.equal((await listDigests(store)).size, 0);
        // The ref is free again and the bytes are still there to resume.
        const again = await store.writer({ ref: "bad-size" });
        assert.equal((await again.status()).offset, data.length);
        assert.equal(await again.commit(data.length, digestOf(data)), digestOf(data));
      }),
    );

    void it(
      "commit with the wrong digest fails and leaves no blob",
      withStore(async ({ store }) => {
        const data = bytes(1000, 8);
        const wrong = digestOf(bytes(1000, 9));
        const w = await store.writer({ ref: "bad-digest" });
        await w.write(data);
        await rejectsWith(
          w.commit(data.length, wrong),
          "failed-precondition",
          `unexpected commit digest ${digestOf(data)}, expected ${wrong}`,
        );
        await w.close();
        await rejectsWith(store.info(digestOf(data)), "not-found");
        await rejectsWith(store.info(wrong), "not-found");
        assert.equal((await listDigests(store)).size, 0);
        const again = await store.writer({ ref: "bad-digest" });
        await again.close();
      }),
    );

    void it(
      "a writer expecting a committed digest is already-exists",
      withStore(async ({ store }) => {
        const data = bytes(777, 10);
        const d = await ingest(store, "first", data);
        await rejectsWith(store.writer({ ref: "second", expected: d }), "already-exists", `content ${d}`);
        // The refusal must not hold the ref.
        const w = await store.writer({ ref: "second" });
        await w.close();
      }),
    );

    void it(
      "committing content that is already present is already-exists and drops the ingest",
      withStore(async ({ store }) => {
        const data = bytes(888, 11);
        const d = await ingest(store, "one", data);
        const w = await store.writer({ ref: "two" });
        await w.write(data);
        await rejectsWith(w.commit(data.length, ""), "already-exists", `content ${d}`);
        await rejectsWith(store.status("two"), "not-found");
        assert.deepEqual(await readAll(store, d), data);
      }),
    );

    void it(
      "a second writer on a live ref is unavailable until the first closes",
      withStore(async ({ store }) => {
        const w = await store.writer({ ref: "locked" });
        // containerd's tryLock text, naming the backend ref (a namespaced store's is prefixed).
        await rejectsWith(
          store.writer({ ref: "locked" }),
          "unavailable",
          /^ref (?:\S+\/)?locked locked for \S+ \(since \d{4}-\d\d-\d\d [\d:.]+ \+0000 UTC m=\+\d+\.\d{9}\): unavailable$/,
        );
        const other = await store.writer({ ref: "other" });
        await other.close();
        await w.close();
        const again = await store.writer({ ref: "locked" });
        await again.close();
      }),
    );

    void it(
      "a writer is released by commit and cannot be used afterwards",
      withStore(async ({ store }) => {
        const data = bytes(10, 12);
        const w = await store.writer({ ref: "done" });
        await w.write(data);
        await w.commit(data.length, digestOf(data));
        await rejectsWith(w.write(data), "failed-precondition");
        await rejectsWith(w.commit(data.length, digestOf(data)), "failed-precondition");
        await w.close();
        const again = await store.writer({ ref: "done" });
        await again.close();
      }),
    );

    void it(
      "truncate drops what was written",
      withStore(async ({ store }) => {
        const junk = bytes(5000, 13);
        const data = bytes(3000, 14);
        const w = await store.writer({ ref: "truncate" });
        await w.write(junk);
        await w.truncate();
        assert.equal((await w.status()).offset, 0);
        assert.equal(w.digest(), digestOf(new Uint8Array(0)));
        assert.equal((await store.status("truncate")).offset, 0);
        assert.equal(await w.write(data), data.length);
        assert.equal(await w.commit(data.length, digestOf(data)), digestOf(data));
        assert.deepEqual(await readAll(store, digestOf(data)), data);
      }),
    );

    void it(
      "read honours offset and length",
      withStore(async ({ store }) => {
        const data = bytes(10_000, 15);
        const d = await ingest(store, "ranges", data);
        assert.deepEqual(await readAll(store, d, 100, 50), data.subarray(100, 150));
        assert.deepEqual(await readAll(store, d, 9_000, 0), data.subarray(9_000));
        assert.deepEqual(await readAll(store, d, 9_000, -1), data.subarray(9_000));
        assert.deepEqual(await readAll(store, d, 9_990, 500), data.subarray(9_990));
        assert.deepEqual(await readAll(store, d, 0, data.length), data);
        assert.equal((await readAll(store, d, data.length, 0)).length, 0);
      }),
    );

    void it(
      "read streams chunks of at most 1 MiB",
      withStore(async ({ store }) => {
        const data = bytes(3 * MiB + 12345, 16);
        const d = await ingest(store, "chunks", data);
        const sizes: number[] = [];
        const parts: Uint8Array[] = [];
        for await (const chunk of store.read(d, 0, 0)) {
          sizes.push(chunk.length);
          parts.push(chunk);
        }
        assert.ok(sizes.length >= 4, `expected several chunks, got ${sizes.length}`);
        assert.ok(
          sizes.every((n) => n > 0 && n <= MiB),
          `chunk sizes ${sizes.join(",")}`,
        );
        assert.deepEqual(Buffer.concat(parts), data);
        // A short range of a big blob, and a blob just above 64 KiB, read in full.
        assert.deepEqual(await readAll(store, d, MiB + 5, 100), data.subarray(MiB + 5, MiB + 105));
        const mid = bytes(64 * 1024 + 1, 19);
        assert.deepEqual(await readAll(store, await ingest(store, "mid", mid)), mid);
      }),
    );

    void it(
      "read past the end is out-of-range",
      withStore(async ({ store }) => {
        const data = bytes(100, 17);
        const d = await ingest(store, "oob", data);
        await rejectsWith(readAll(store, d, 101, 0), "out-of-range");
        await rejectsWith(readAll(store, d, 1_000_000, 10), "out-of-range");
      }),
    );

    void it(
      "a missing blob is not-found for info, read and delete",
      withStore(async ({ store }) => {
        const d = digestOf(bytes(10, 18));
        await rejectsWith(store.info(d), "not-found", `content digest ${d}`);
        await rejectsWith(readAll(store, d), "not-found", `content digest ${d}`);
        await rejectsWith(store.delete(d), "not-found");
      }),
    );

    void it(
      "malformed digests are invalid-argument",
      withStore(async ({ store }) => {
        const bad = [
          "",
          "sha256:../../etc",
          "sha256:../../../../etc/passwd",
          `sha256:${"A".repeat(64)}`,
          `sha256:${"a".repeat(63)}`,
          `sha256:${"a".repeat(65)}`,
          `sha512:${"a".repeat(128)}`,
          "a".repeat(64),
        ];
        for (const d of bad) {
          await rejectsWith(store.info(d), "invalid-argument");
          await rejectsWith(readAll(store, d), "invalid-argument");
          await rejectsWith(store.delete(d), "invalid-argument");
          await rejectsWith(
            store.writer({ ref: "bad-expected", expected: d || "sha256:x" }),
            "invalid-argument",
          );
        }
      }),
    );

    void it(
      "abort removes the ingest",
      withStore(async ({ store }) => {
        const w = await store.writer({ ref: "abort" });
        await w.write(bytes(1000, 19));
        await w.close();
        await store.abort("abort");
        await rejectsWith(store.status("abort"), "not-found");
        assert.equal((await store.listStatuses()).length, 0);
        await rejectsWith(store.abort("abort"), "not-found");
        const fresh = await store.writer({ ref: "abort" });
        assert.equal((await fresh.status()).offset, 0);
        await fresh.close();
      }),
    );

    void it(
      "delete removes the blob",
      withStore(async ({ store }) => {
        const data = bytes(500, 20);
        const d = await ingest(store, "delete", data);
        await store.delete(d);
        await rejectsWith(store.info(d), "not-found");
        await rejectsWith(readAll(store, d), "not-found");
        await rejectsWith(store.delete(d), "not-found");
        // Deleted content can be written again.
        assert.equal(await ingest(store, "delete-again", data), d);
      }),
    );

    void it(
      "walk lists committed blobs and nothing else",
      withStore(async ({ store }) => {
        const blobs = [bytes(10, 21), bytes(2000, 22), bytes(30_000, 23)];
        const want = new Map<string, number>();
        for (const [i, b] of blobs.entries()) want.set(await ingest(store, `walk-${i}`, b), b.length);
        const pending = await store.writer({ ref: "walk-pending" });
        await pending.write(bytes(99, 24));
        assert.deepEqual(await listDigests(store), want);
        await pending.close();
      }),
    );

    void it(
      "listStatuses lists the ingests in progress",
      withStore(async ({ store }) => {
        assert.deepEqual(await store.listStatuses(), []);
        const a = await store.writer({ ref: "list-a", total: 100 });
        await a.write(bytes(40, 25));
        const b = await store.writer({ ref: "list-b" });
        await b.write(bytes(7, 26));
        await b.close();
        await ingest(store, "list-c", bytes(5, 27));
        const statuses = await store.listStatuses();
        const byRef = new Map(statuses.map((s) => [s.ref, s]));
        assert.deepEqual([...byRef.keys()].sort(), ["list-a", "list-b"]);
        assert.equal(byRef.get("list-a")?.offset, 40);
        assert.equal(byRef.get("list-a")?.total, 100);
        assert.equal(byRef.get("list-b")?.offset, 7);
        await a.close();
      }),
    );
  });
}
