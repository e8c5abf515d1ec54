// Checks the smaps/pagemap reading behind the distinct-pages figure
// (run: node --import tsx --test bench/resident-pages.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { distinctResidentKiB, parseSmapsMappings, presentFrames } from "./resident-pages.js";
import { processMemory } from "./smaps.js";

void test("mappings and their Rss from smaps", () => {
  const smaps = [
    "00400000-00452000 r-xp 00000000 fd:00 123   /usr/bin/node",
    "Size:                328 kB",
    "Rss:                 300 kB",
    "Pss:                 100 kB",
    "7f0000000000-7f0100000000 ---p 00000000 00:00 0",
    "Size:            4194304 kB",
    "Rss:                   0 kB",
    "VmFlags: rd mr mw me",
    "",
  ].join("\n");
  assert.deepEqual(parseSmapsMappings(smaps), [
    { start: 0x400000, end: 0x452000, rssKiB: 300 },
    { start: 0x7f0000000000, end: 0x7f0100000000, rssKiB: 0 },
  ]);
});

void test("present frames from pagemap entries; absent ones skipped, hidden frames refused", () => {
  const entry = (present: boolean, frame: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(frame % 2 ** 32, 0);
    b.writeUInt32LE(((present ? 0x80000000 : 0) | Math.floor(frame / 2 ** 32)) >>> 0, 4);
    return b;
  };
  const frames = presentFrames(
    Buffer.concat([entry(true, 5), entry(false, 9), entry(true, 2 ** 40 + 7), entry(true, 5)]),
  );
  assert.deepEqual([...frames], [5, 2 ** 40 + 7]);
  assert.throws(() => presentFrames(entry(true, 0)), /hides page frames/);
});

void test("this process: distinct pages near its RSS, and a process counted twice counts once", async () => {
  const rss = (await processMemory(process.pid)).rss;
  const once = await distinctResidentKiB([process.pid]);
  const twice = await distinctResidentKiB([process.pid, process.pid]);
  assert.ok(once > rss * 0.8 && once < rss * 1.2, `distinct ${once} KiB, RSS ${rss} KiB`);
  assert.ok(Math.abs(twice - once) < rss * 0.1, `${twice} vs ${once}`);
});
