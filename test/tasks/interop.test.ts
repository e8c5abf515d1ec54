// Interop the other way round: a real containerd 1.6 runs containers through the Berth shim
// (`--runtime io.containerd.berth.v1`, found on its PATH), with the shim's events reaching
// containerd over its ttrpc socket; output, exit codes, exec and the task lifecycle work.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeOciArchive } from "../fixtures/oci-image.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { ctrOk, runCtr, spawnCtr } from "../harness/ctr.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";

const IMAGE = "docker.io/library/busybox:interop";
const RUNTIME = "io.containerd.berth.v1";
const BIN = fileURLToPath(new URL("../../bin", import.meta.url));

void describe("a real containerd runs containers through the Berth shim", { timeout: 180_000 }, () => {
  let containerd: ContainerdHandle;
  let work: string;
  const ns = "interop";
  const ctr = (args: string[]) => ctrOk(containerd.address, args, { namespace: ns });
  const run = (...rest: string[]) => ["run", "--fifo-dir", containerd.fifoDir, "--runtime", RUNTIME, ...rest];

  before(async () => {
    [containerd, work] = await Promise.all([
      startContainerd({ env: { PATH: `${BIN}:${process.env.PATH ?? ""}` } }),
      makeTempDir("interop"),
    ]);
    const archive = join(work, "busybox.tar");
    await writeOciArchive(archive, { image: await busyboxImage({ format: "oci" }), name: IMAGE });
    await ctr(["images", "import", archive]);
  });

  after(async () => {
    await containerd?.stop();
    if (work) await removeTempDir(work);
  });

  void test("run --rm prints, propagates the exit code, and the shim's events reach containerd", async () => {
    const events = spawnCtr(containerd.address, ["events"], { namespace: ns });
    await new Promise((r) => setTimeout(r, 300));
    const r = await runCtr(
      containerd.address,
      run("--rm", IMAGE, "once", "sh", "-c", "echo hello from berth; exit 4"),
      {
        namespace: ns,
      },
    );
    assert.equal(r.stdout, "hello from berth\n", r.stderr);
    assert.equal(r.code, 4, r.stderr);
    await events.waitFor("/tasks/delete", 20_000);
    const topics = [...(await events.stop()).stdout.matchAll(/\/tasks\/[a-z-]+/g)].map((m) => m[0]);
    assert.deepEqual(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
  });

  void test("run -d, exec, ps, pause/resume, kill and rm", async () => {
    await ctr(run("-d", IMAGE, "daemon", "sleep", "1000"));
    assert.match(await ctr(["tasks", "ls"]), /^daemon\s+\d+\s+RUNNING$/m);
    const out = await ctr([
      "tasks",
      "exec",
      "--fifo-dir",
      containerd.fifoDir,
      "--exec-id",
      "x1",
      "daemon",
      "echo",
      "in exec",
    ]);
    assert.equal(out, "in exec\n");
    assert.match(await ctr(["tasks", "ps", "daemon"]), /^\d+\s+-$/m);
    await ctr(["tasks", "pause", "daemon"]);
    assert.match(await ctr(["tasks", "ls"]), /^daemon\s+\d+\s+PAUSED$/m);
    await ctr(["tasks", "resume", "daemon"]);
    await ctr(["tasks", "kill", "-s", "9", "daemon"]);
    for (let i = 0; i < 50 && !/STOPPED/.test(await ctr(["tasks", "ls"])); i++)
      await new Promise((r) => setTimeout(r, 100));
    await ctr(["tasks", "rm", "daemon"]);
    await ctr(["containers", "rm", "daemon"]);
    assert.equal((await ctr(["tasks", "ls", "-q"])).trim(), "");
  });
});
