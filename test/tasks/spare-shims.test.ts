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
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { removeCgroupParents } from "../harness/cgroups.js";
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
    await removeCgroupParents([ns, `shimlog-${process.pid}`]);
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

  void test("a pooled shim's log reaches berthd's log, also after berthd restarts", async () => {
    const dir = await makeTempDir("shimlog");
    const [root, state] = [join(dir, "root"), join(dir, "state")];
    const logNs = `shimlog-${process.pid}`;
    let daemon = await startBerthd({ root, state, env });
    try {
      await ctrOk(daemon.address, ["images", "import", archive], { namespace: logNs });
      const run = async (id: string, args: string[]) =>
        ctrOk(
          daemon.address,
          ["run", "--fifo-dir", fifo, "--runtime", "io.containerd.berth.v1", ...args, IMAGE, id, "true"],
          {
            namespace: logNs,
          },
        );
      await run("logged", ["--rm"]);
      // The container's exit, as the shim logged it, is a line of berthd's log naming the shim.
      await waitFor(() =>
        /"shim":"unix:[^"]+".*berth-shim\[\d+\]: exit pid=\d+ status=0/.test(daemon.logs()),
      );
      await ctrOk(
        daemon.address,
        [
          "run",
          "-d",
          "--fifo-dir",
          fifo,
          "--runtime",
          "io.containerd.berth.v1",
          IMAGE,
          "kept",
          "sleep",
          "60",
        ],
        {
          namespace: logNs,
        },
      );
      const address = daemon.address;
      await daemon.kill9();
      daemon = await startBerthd({ root, state, address, env });
      await ctrOk(daemon.address, ["tasks", "kill", "-s", "KILL", "kept"], { namespace: logNs });
      // The restarted berthd found the group shim and reads its log again: the exit (137) shows.
      await waitFor(() => /berth-shim\[\d+\]: exit pid=\d+ status=137/.test(daemon.logs()));
      await ctrOk(daemon.address, ["tasks", "rm", "kept"], { namespace: logNs });
      await ctrOk(daemon.address, ["containers", "rm", "kept"], { namespace: logNs });
    } finally {
      await daemon.killShims();
      await daemon.stop();
      await removeTempDir(dir);
    }
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

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a line in berthd's log");
    await new Promise((r) => setTimeout(r, 50));
  }
}
