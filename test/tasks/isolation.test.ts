// What a container must not get through the Berth shim: berthd's or the shim's descriptors (the
// container sees only its stdio), a cwd under /proc/<pid>/fd (a leaked host directory,
// CVE-2024-21626), or a uid past int32 (which wraps to root, CVE-2024-40635). And the shim itself
// holds none of berthd's files.
import assert from "node:assert/strict";
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createClient, isCode, Tasks } from "../../src/client/index.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk, runCtr } from "../harness/ctr.js";
import { removeTempDir } from "../harness/temp-dir.js";
import { removeCgroupParents } from "../harness/cgroups.js";
import { makeTaskWork } from "./task-work.js";

const IMAGE = "docker.io/library/busybox:isolation";
const RUNTIME = "io.containerd.berth.v1";

void describe("container isolation through the Berth shim", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let work: string;
  let fifo: string;
  const ns = `isolation-${process.pid}`;
  const ctr = (args: string[]) => ctrOk(berthd.address, args, { namespace: ns });
  const run = (...rest: string[]) => ["run", "--fifo-dir", fifo, "--runtime", RUNTIME, ...rest];

  before(async () => {
    let w;
    [berthd, w] = await Promise.all([startBerthd(), makeTaskWork("isolation", IMAGE)]);
    ({ dir: work, fifo } = w);
    await ctr(["images", "import", w.archive]);
  });

  after(async () => {
    await berthd?.killShims();
    await berthd?.stop();
    await removeCgroupParents([ns]);
    if (work) await removeTempDir(work);
  });

  void test("a container sees only its stdio; exec too", async () => {
    // ls opens the directory it lists as fd 3.
    assert.equal(await ctr(run("--rm", IMAGE, "fds", "ls", "/proc/self/fd")), "0\n1\n2\n3\n");
    await ctr(run("-d", IMAGE, "fds-exec", "sleep", "1000"));
    const out = await ctr([
      "tasks",
      "exec",
      "--fifo-dir",
      fifo,
      "--exec-id",
      "ls",
      "fds-exec",
      "ls",
      "/proc/self/fd",
    ]);
    assert.equal(out, "0\n1\n2\n3\n");
    // The container's init too: only what runc gave it.
    const init = await ctr([
      "tasks",
      "exec",
      "--fifo-dir",
      fifo,
      "--exec-id",
      "ls1",
      "fds-exec",
      "ls",
      "/proc/1/fd",
    ]);
    assert.equal(init, "0\n1\n2\n");
  });

  void test("the shim holds none of berthd's files or sockets", async () => {
    const bundle = join(berthd.state, "io.containerd.runtime.v2.task", ns, "fds-exec");
    const pid = Number(await readFile(join(bundle, "init.pid"), "utf8"));
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const shim = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    assert.match(await readFile(`/proc/${shim}/cmdline`, "utf8"), /shim/);
    const targets = await Promise.all(
      (await readdir(`/proc/${shim}/fd`)).map((fd) => readlink(`/proc/${shim}/fd/${fd}`).catch(() => "")),
    );
    for (const t of targets) {
      assert.equal(t.startsWith(berthd.root), false, `shim holds ${t}`);
      assert.equal(t === berthd.address, false, `shim holds berthd's socket`);
    }
    await ctr(["tasks", "kill", "-s", "9", "fds-exec"]);
  });

  void test("a cwd under /proc/self/fd is refused, for the container and for an exec", async () => {
    const r = await runCtr(berthd.address, run("--rm", "--cwd", "/proc/self/fd/3", IMAGE, "cwd", "pwd"), {
      namespace: ns,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cwd "\/proc\/self\/fd\/3" is under \/proc\/<pid>\/fd: invalid argument/);
    await ctr(run("-d", IMAGE, "cwd-exec", "sleep", "1000"));
    const e = await runCtr(
      berthd.address,
      ["tasks", "exec", "--fifo-dir", fifo, "--exec-id", "bad", "--cwd", "/proc/1/fd/0", "cwd-exec", "pwd"],
      { namespace: ns },
    );
    assert.notEqual(e.code, 0);
    assert.match(e.stderr, /is under \/proc\/<pid>\/fd: invalid argument/);
    await ctr(["tasks", "kill", "-s", "9", "cwd-exec"]);
  });

  void test("a uid past int32 is refused, not wrapped to root", async () => {
    await ctr(run("-d", IMAGE, "uid-exec", "sleep", "1000"));
    const client = createClient(berthd.address, { namespace: ns });
    const exec = (execId: string, uid: number) =>
      client.service(Tasks).exec({
        containerId: "uid-exec",
        execId,
        spec: {
          typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
          value: Buffer.from(
            JSON.stringify({ args: ["id", "-u"], cwd: "/", env: ["PATH=/bin"], user: { uid, gid: 0 } }),
          ),
        },
      });
    try {
      await assert.rejects(exec("bigid", 2147483648), (err: unknown) => {
        assert.ok(isCode(err, "invalid-argument"), String(err));
        assert.match((err as Error).message, /uid 2147483648 is out of range/);
        return true;
      });
      // An ordinary uid is accepted.
      await exec("okid", 65534);
    } finally {
      client.close();
    }
    await ctr(["tasks", "kill", "-s", "9", "uid-exec"]);
  });
});
