// malloc_trim for real: memory freed by the allocator goes back to the kernel (RSS drops).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { releaseFreeMemory } from "./malloc.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const rssKiB = (): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1]);

void test("releaseFreeMemory gives freed malloc memory back to the kernel", async () => {
  // Many Buffers just over Node's pool size come from malloc; dropping them leaves free chunks
  // that glibc keeps (the newest are at the top of the heap, but the rest sit below live ones).
  let keep: Buffer[] = [];
  const survivors: Buffer[] = [];
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.alloc(16 * 1024, 1);
    if (i % 64 === 0) survivors.push(b);
    else keep.push(b);
  }
  keep = [];
  gc();
  // V8 frees array buffer memory on a background thread after the collection.
  await new Promise((r) => setTimeout(r, 200));
  const before = rssKiB();
  assert.ok(releaseFreeMemory(), "malloc_trim released memory");
  const after = rssKiB();
  assert.ok(after < before - 100 * 1024, `RSS ${before} KiB -> ${after} KiB`);
  assert.ok(survivors.every((b) => b[0] === 1));
});
