import { test } from "node:test";
import assert from "node:assert/strict";
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { IdleCollector } from "./idle-gc.js";

void test("collects only when quiet and grown since the last collection, then measures from there", () => {
  let used = 100;
  let quiet = 0;
  const collections: number[] = [];
  const c = new IdleCollector({
    collect: () => {
      collections.push(used);
      used = 110; // what survives
    },
    heapUsed: () => used,
    quietFor: () => quiet,
    quietMs: 2000,
    minGrowthBytes: 50,
  });
  used = 200;
  assert.equal(c.tick(), false, "a call in flight: never");
  quiet = 1999;
  assert.equal(c.tick(), false, "not quiet long enough");
  quiet = 2000;
  assert.equal(c.tick(), true);
  assert.deepEqual(collections, [200]);
  used = 150;
  assert.equal(c.tick(), false, "grown by 40 since the collection (110): not enough");
  used = 105; // V8 collected on its own
  assert.equal(c.tick(), false);
  used = 156;
  assert.equal(c.tick(), true, "grown by 51 from the lower point");
  assert.deepEqual(collections, [200, 156]);
});

void test("with V8's own gc(), a tick after garbage gives the heap back", () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  const used = () => getHeapStatistics().used_heap_size;
  const c = new IdleCollector({ collect: gc, heapUsed: used, quietFor: () => Infinity });
  let keep: unknown[] | undefined = [];
  for (let i = 0; i < 200_000; i++) keep.push({ i, s: `garbage ${i}` });
  const before = used();
  keep = undefined;
  assert.equal(c.tick(), true, `the heap grew to ${before} bytes`);
  assert.ok(used() < before - (4 << 20), `${used()} bytes in use after, ${before} before`);
  assert.equal(keep, undefined);
});
