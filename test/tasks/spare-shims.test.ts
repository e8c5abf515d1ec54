// The Berth shim pool over time: a spare that waited longer than a shim's idle limit is still
// alive when a task needs it (berthd holds a connection to it); a run of short-lived containers
// reuses one shim instead of starting one per container; a berthd that dies leaves no spare behind
// (it exits once alone), and a berthd that stops ends its spare at once.
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk } from "../harness/ctr.js";
import { waitGone } from "../harness/process-tree.js";
import { removeTempDir } from "../harness/temp-dir.js";
import { makeTaskWork } from "./task-work.js";

const IMAGE = "docker.io/library/busybox:spares";
/** Shims in these tests give up after this long alone (60 s in production). */
const IDLE_MS = 1500;

/** Pids of the Berth shims serving berthd at address. */
async function shimsOf(address: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("shim/main.js") && cmd.includes(`-address\0${address}\0`)) out.push(Number(pid));
  }
  return out.sort((a, b) => a - b);
}

void describe("the pool of Berth shims", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let work: string;
  let archive: string;
  let fifo: string;
  const ns = `spares-${process.pid}`;
  const env = { BERTH_SHIM_IDLE_EXIT_MS: String(IDLE_MS) };

  before(async () => {
    ({ dir: work, fifo, archive } = await makeTaskWork("spares", IMAGE));
    berthd = await startBerthd({ env });
    await ctrOk(berthd.address, ["images", "import", archive], { namespace: ns });
  });

  after(async () => {
    await berthd?.killShims();
    await berthd?.stop();
    await removeTempDir(work);
  });

  void test("a spare outlives the idle limit and serves; short runs reuse one shim", async () => {
    await new Promise((r) => setTimeout(r, IDLE_MS * 2));
    const [spare] = await shimsOf(berthd.address);
    assert.ok(spare, "a spare shim is running");
    // Back-to-back runs for longer than the pool's refill delay (1 s), all with the same id: the
    // shim each run takes comes back, so no other shim is ever started, and each run's id is free
    // again for the next although its `runc delete` finishes after the Delete reply.
    const seen = new Set<number>();
    const started = Date.now();
    for (let i = 0; i < 5 || Date.now() - started < 2500; i++) {
      const out = await ctrOk(
        berthd.address,
        [
          "run",
          "--rm",
          "--fifo-dir",
          fifo,
          "--runtime",
          "io.containerd.berth.v1",
          IMAGE,
          "short",
          "echo",
          `run ${i}`,
        ],
        { namespace: ns },
      );
      assert.equal(out, `run ${i}\n`);
      for (const pid of await shimsOf(berthd.address)) seen.add(pid);
    }
    await new Promise((r) => setTimeout(r, 1500));
    // The same single process served every run and is the spare again.
    assert.deepEqual([...seen], [spare]);
    assert.deepEqual(await shimsOf(berthd.address), [spare]);
    // Nothing of the runs is left in runc's state.
    const runcRoot = join(berthd.state, "io.containerd.runtime.v2.task", ".runc", ns);
    assert.deepEqual(await readdir(runcRoot).catch(() => []), []);
  });

  void test("a spare left by a crashed berthd exits on its own; a stopping berthd ends its spare", async () => {
    const crashed = await startBerthd({ env });
    const spares = await waitForShims(crashed.address);
    await crashed.kill9();
    assert.ok(await waitGone(spares, IDLE_MS + 5000), "the orphaned spare exited");

    const stopped = await startBerthd({ env: { BERTH_SHIM_IDLE_EXIT_MS: "600000" } });
    const more = await waitForShims(stopped.address);
    await stopped.stop();
    assert.ok(await waitGone(more, 3000), "the spare ended with berthd");
  });
});

async function waitForShims(address: string): Promise<number[]> {
  for (let i = 0; i < 100; i++) {
    const pids = await shimsOf(address);
    if (pids.length > 0) return pids;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no spare shim started");
}
