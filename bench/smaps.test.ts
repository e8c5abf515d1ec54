// Checks the PSS/RSS parsing behind the memory rows (run: node --import tsx --test bench/smaps.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSmapsRollup, processMemory, sumMemory } from "./smaps.js";

const ROLLUP = `555b664bd000-7ffc6ca72000 ---p 00000000 00:00 0                          [rollup]
Rss:               76236 kB
Pss:               37301 kB
Pss_Dirty:         30012 kB
Pss_Anon:          29980 kB
Pss_File:           7321 kB
Pss_Shmem:             0 kB
Shared_Clean:      41000 kB
SwapPss:               0 kB
`;

void test("Rss, Pss and the anonymous/file split of a smaps_rollup, in KiB", () => {
  assert.deepEqual(parseSmapsRollup(ROLLUP), { rss: 76236, pss: 37301, pssAnon: 29980, pssFile: 7321 });
  // Older kernels have no Pss_Anon/Pss_File; SwapPss must not be taken for Pss.
  const old = "Rss:  10 kB\nSwapPss:  99 kB\nPss:  4 kB\n";
  assert.deepEqual(parseSmapsRollup(old), { rss: 10, pss: 4 });
  assert.throws(() => parseSmapsRollup("Rss: 10 kB\n"), /no Rss\/Pss/);
});

void test("sums add up; the split only when every process has it", () => {
  assert.deepEqual(
    sumMemory([
      { rss: 10, pss: 5, pssAnon: 3, pssFile: 2 },
      { rss: 20, pss: 7, pssAnon: 6, pssFile: 1 },
    ]),
    { rss: 30, pss: 12, pssAnon: 9, pssFile: 3 },
  );
  assert.deepEqual(
    sumMemory([
      { rss: 10, pss: 5, pssAnon: 3 },
      { rss: 1, pss: 1 },
    ]),
    { rss: 11, pss: 6 },
  );
  assert.deepEqual(sumMemory([]), { rss: 0, pss: 0, pssAnon: 0, pssFile: 0 });
});

void test("this process: PSS is positive and at most RSS", async () => {
  const m = await processMemory(process.pid);
  assert.equal(m.pid, process.pid);
  assert.ok(m.pss > 0 && m.pss <= m.rss, JSON.stringify(m));
});
