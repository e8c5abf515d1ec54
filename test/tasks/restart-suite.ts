// Shims outlive berthd: after `kill -9` of the daemon and a restart on the same root and state,
// every running task is still listed, can be killed, reports the right exit status and can be
// deleted. A shim killed with -9 is cleaned up after: its task goes, /tasks/exit is published,
// and nothing of it stays (bundle, runc container, processes, mounts).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createClient, Tasks } from "../../src/client/index.js";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeOciArchive } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk, runCtr, spawnCtr } from "../harness/ctr.js";
import { waitGone } from "../harness/process-tree.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { removeCgroupParents } from "../harness/cgroups.js";

const IMAGE = "docker.io/library/busybox:restart";
const COUNT = 10;

/** The parent of a process: a container's init is reparented to its shim (the subreaper). */
async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

export function restartSuite(runtime: string, label: string): void {
  void describe(
    `tasks survive a berthd crash; a dead shim is cleaned up (${label})`,
    { timeout: 240_000 },
    () => {
      let work: string;
      let berthd: BerthdHandle | undefined;
      const ns = `restart-${label.replace(/\W+/g, "-")}-${process.pid}`;
      const ids = Array.from({ length: COUNT }, (_, i) => `c${i}`);
      let root: string;
      let state: string;
      let address: string;
      let fifo: string;

      const start = async () => (berthd = await startBerthd({ root, state, address }));
      const ctr = (args: string[]) => ctrOk(address, args, { namespace: ns });
      const taskState = async () => {
        const out = await ctr(["tasks", "ls"]);
        return new Map([...out.matchAll(/^(\S+)\s+(\d+)\s+(\S+)$/gm)].map((m) => [m[1], m[3]]));
      };

      before(async () => {
        work = await makeTempDir("restart");
        [root, state, fifo] = [join(work, "root"), join(work, "state"), join(work, "fifo")];
        address = join(work, "berthd.sock");
        await mkdir(fifo);
        await start();
        const archive = join(work, "busybox.tar");
        await writeOciArchive(archive, { image: await busyboxImage({ format: "oci" }), name: IMAGE });
        await ctr(["images", "import", archive]);
      });

      after(async () => {
        if (berthd) {
          for (const id of ids) await runCtr(address, ["tasks", "kill", "-s", "9", id], { namespace: ns });
          await berthd.killShims();
          await berthd.stop();
        }
        await removeCgroupParents([ns]);
        await removeTempDir(work);
      });

      void test(`kill -9 berthd with ${COUNT} running containers, restart: all still run and can be stopped`, async () => {
        await Promise.all(
          ids.map((id) =>
            ctr([
              "run",
              "-d",
              "--fifo-dir",
              fifo,
              "--runtime",
              "io.containerd.runc.v2",
              IMAGE,
              id,
              "sleep",
              "1000",
            ]),
          ),
        );
        const before = await taskState();
        for (const id of ids) assert.equal(before.get(id), "RUNNING", id);

        await berthd?.kill9();
        await start();
        const after = await taskState();
        for (const id of ids) assert.equal(after.get(id), "RUNNING", `${id} after restart`);

        // Wait (a long call to the reconnected shims), then kill: exit statuses come back right.
        const client = createClient(address, { namespace: ns });
        try {
          const tasks = client.service(Tasks);
          const waits = ids.map((id) => tasks.wait({ containerId: id }));
          await new Promise((r) => setTimeout(r, 200));
          for (const [i, id] of ids.entries()) await ctr(["tasks", "kill", "-s", i % 2 ? "9" : "15", id]);
          // busybox sleep as pid 1 has no SIGTERM handler: the kernel ignores 15 for it; kill those with 9.
          await new Promise((r) => setTimeout(r, 300));
          for (const [i, id] of ids.entries()) if (i % 2 === 0) await ctr(["tasks", "kill", "-s", "9", id]);
          const statuses = await Promise.all(waits);
          for (const s of statuses) assert.equal(s.exitStatus, 137);
        } finally {
          client.close();
        }
        for (const id of ids) {
          await ctr(["tasks", "rm", id]);
          await ctr(["containers", "rm", id]);
        }
        assert.equal((await taskState()).size, 0);
        for (const id of ids)
          assert.equal(existsSync(join(state, "io.containerd.runtime.v2.task", ns, id)), false);
      });

      void test("kill -9 of a shim: its task is reported gone and nothing of it stays", async () => {
        const id = "victim";
        await ctr([
          "run",
          "-d",
          "--fifo-dir",
          fifo,
          "--runtime",
          "io.containerd.runc.v2",
          IMAGE,
          id,
          "sleep",
          "1000",
        ]);
        const bundle = join(state, "io.containerd.runtime.v2.task", ns, id);
        const containerPid = Number(await readFile(join(bundle, "init.pid"), "utf8"));
        assert.ok(containerPid > 0);
        const events = spawnCtr(address, ["events"], { namespace: ns });
        await new Promise((r) => setTimeout(r, 200));
        const shim = await parentOf(containerPid);
        assert.ok(shim > 1 && shim !== berthd?.pid, `shim of ${id}: ${shim}`);
        assert.match(await readFile(`/proc/${shim}/cmdline`, "utf8"), /shim/);
        process.kill(shim, "SIGKILL");

        await events.waitFor("/tasks/delete", 20_000);
        const seen = (await events.stop()).stdout;
        assert.match(seen, /\/tasks\/exit/);
        assert.equal((await taskState()).has(id), false);
        assert.equal(existsSync(bundle), false, "bundle removed");
        assert.ok(await waitGone([containerPid], 5000), "the container's process is gone");
        const mounts = await readFile("/proc/self/mountinfo", "utf8");
        assert.equal(mounts.includes(bundle), false, "no mount left under the bundle");
        await ctr(["containers", "rm", id]);
      });
    },
  );
}
