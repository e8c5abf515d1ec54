// The tasks suite: the stock ctr against berthd (with the runtime under test) and a private
// containerd 1.6 (always with its own runc shim), side by side: run --rm, exit codes, run -d and the
// tasks commands, their errors, and the /tasks/* events the shim forwards over berthd's ttrpc
// endpoint. Run once per runtime berthd offers (the stock Go shim, and the Berth shim).
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeOciArchive } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { runCtr, spawnCtr } from "../harness/ctr.js";
import { normalizePids } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { removeCgroupParents } from "../harness/cgroups.js";
import { DAEMONS, sideBySide, type Daemon } from "../compat/side-by-side.js";

const IMAGE = "docker.io/library/busybox:tasks";
/** What containerd runs everything with: its own Go shim. */
const CONTAINERD_RUNTIME = "io.containerd.runc.v2";

export function tasksSuite(runtime: string, label: string): void {
  void describe(`tasks through ${label}: berthd vs containerd`, { timeout: 240_000 }, () => {
    let berthd: BerthdHandle;
    let containerd: ContainerdHandle;
    let work: string;
    const fifo: Partial<Record<Daemon, string>> = {};
    const { both, same, address } = sideBySide(() => ({ berthd, containerd }));
    // Not "tasks": on cgroup v1 the cgroup path /<ns>/<id> would collide with the "tasks" file.
    const ns = `${label.replace(/\W+/g, "-")}-${process.pid}`;

    /**
     * `ctr run` args with each daemon's own FIFO dir and cgroup: both daemons share the host's cgroup
     * tree, and ctr's default cgroup path /<ns>/<id> would put both containers in one cgroup.
     */
    const run =
      (...rest: string[]) =>
      (d: Daemon) => {
        const id = rest[rest.indexOf(IMAGE) + 1] ?? "";
        const rt = d === "berthd" ? runtime : CONTAINERD_RUNTIME;
        return ["run", "--fifo-dir", fifo[d]!, "--cgroup", `/${d}-${ns}/${id}`, "--runtime", rt, ...rest];
      };
    const exec =
      (...rest: string[]) =>
      (d: Daemon) => ["tasks", "exec", "--fifo-dir", fifo[d]!, ...rest];
    const pidsOut = (s: string) => normalizePids(s).replace(/^\d+(\s)/gm, "<PID>$1");

    before(async () => {
      [berthd, containerd, work] = await Promise.all([
        startBerthd(),
        startContainerd(),
        makeTempDir("tasks"),
      ]);
      for (const d of DAEMONS) {
        const dir = join(work, `fifo-${d}`);
        await mkdir(dir);
        fifo[d] = dir;
      }
      const archive = join(work, "busybox.tar");
      await writeOciArchive(archive, { image: await busyboxImage({ format: "oci" }), name: IMAGE });
      await same(["images", "import", archive], { namespace: ns, succeed: true });
    });

    after(async () => {
      for (const d of DAEMONS) {
        const tasks = await runCtr(address(d), ["tasks", "ls", "-q"], { namespace: ns }).catch(
          () => undefined,
        );
        for (const id of tasks?.stdout.split("\n").filter(Boolean) ?? [])
          await runCtr(address(d), ["tasks", "kill", "-s", "9", id], { namespace: ns }).catch(
            () => undefined,
          );
      }
      await Promise.allSettled([berthd?.killShims(), berthd?.stop(), containerd?.stop()]);
      await removeCgroupParents(DAEMONS.map((d) => `/${d}-${ns}`));
      if (work) await removeTempDir(work);
    });

    void test("run --rm prints the output and propagates exit codes", async () => {
      const hello = await same(run("--rm", IMAGE, "hello", "echo", "hello"), {
        namespace: ns,
        succeed: true,
      });
      assert.equal(hello.stdout, "hello\n");
      const three = await same(run("--rm", IMAGE, "three", "sh", "-c", "exit 3"), ns);
      assert.equal(three.code, 3);
      // Nothing is left: no task, no container.
      await same(["tasks", "ls"], { namespace: ns, succeed: true });
      await same(["containers", "ls", "-q"], { namespace: ns, succeed: true });
    });

    void test("run -d, then tasks ls/ps/exec/pause/resume/metrics/kill/rm and containers rm", async () => {
      await same(run("-d", IMAGE, "sleeper", "sleep", "1000"), { namespace: ns, succeed: true });
      const ls = await both(["tasks", "ls"], ns);
      assert.equal(normalizePids(ls.berthd.stdout), normalizePids(ls.containerd.stdout));
      assert.match(ls.berthd.stdout, /sleeper\s+\d+\s+RUNNING/);

      const ps = await both(["tasks", "ps", "sleeper"], ns);
      assert.equal(pidsOut(ps.berthd.stdout), pidsOut(ps.containerd.stdout));

      const ex = await same(exec("--exec-id", "e1", "sleeper", "sh", "-c", "echo from exec; exit 5"), ns);
      assert.equal(ex.stdout, "from exec\n");
      assert.equal(ex.code, 5);

      await same(["tasks", "pause", "sleeper"], { namespace: ns, succeed: true });
      const paused = await both(["tasks", "ls"], ns);
      assert.match(paused.berthd.stdout, /sleeper\s+\d+\s+PAUSED/);
      assert.equal(normalizePids(paused.berthd.stdout), normalizePids(paused.containerd.stdout));
      await same(["tasks", "resume", "sleeper"], { namespace: ns, succeed: true });

      const metrics = await both(["tasks", "metrics", "--format", "json", "sleeper"], ns);
      for (const d of DAEMONS) {
        assert.equal(metrics[d].code, 0, metrics[d].stderr);
        const m = JSON.parse(metrics[d].stdout) as Record<string, unknown>;
        assert.ok("memory" in m || "Memory" in m, `${d}: ${metrics[d].stdout.slice(0, 200)}`);
      }

      // Deleting a running task fails the same way on both.
      await same(["tasks", "rm", "sleeper"], ns);
      await same(["tasks", "kill", "-s", "9", "sleeper"], { namespace: ns, succeed: true });
      for (let i = 0; i < 50; i++) {
        const r = await runCtr(address("berthd"), ["tasks", "ls"], { namespace: ns });
        const c = await runCtr(address("containerd"), ["tasks", "ls"], { namespace: ns });
        if (/STOPPED/.test(r.stdout) && /STOPPED/.test(c.stdout)) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const stopped = await both(["tasks", "ls"], ns);
      assert.match(stopped.berthd.stdout, /sleeper\s+\d+\s+STOPPED/);
      await same(["tasks", "rm", "sleeper"], { namespace: ns, succeed: true });
      await same(["containers", "rm", "sleeper"], { namespace: ns, succeed: true });
      await same(["tasks", "ls"], { namespace: ns, succeed: true });
    });

    void test("errors: no such task or container, a second task, an unknown runtime", async () => {
      await same(["tasks", "ps", "nothing"], ns);
      await same(["tasks", "kill", "nothing"], ns);
      await same(["containers", "create", IMAGE, "idle", "sleep", "1000"], { namespace: ns, succeed: true });
      await same(["tasks", "ps", "idle"], ns);
      await same(["tasks", "rm", "idle"], ns);
      await same(["containers", "rm", "idle"], { namespace: ns, succeed: true });
      await same(run("--rm", "--runtime", "io.containerd.nope.v1", IMAGE, "nope", "true"), ns);
      await same(["containers", "ls", "-q"], { namespace: ns, succeed: true });
    });

    void test("the /tasks/* events of a run are the same, forwarded by the shim over ttrpc", async () => {
      const seen: Record<Daemon, string[]> = { berthd: [], containerd: [] };
      const watchers = DAEMONS.map((d) => ({ d, p: spawnCtr(address(d), ["events"], { namespace: ns }) }));
      await new Promise((r) => setTimeout(r, 300));
      await same(run("--rm", IMAGE, "evented", "true"), { namespace: ns, succeed: true });
      for (const w of watchers) await w.p.waitFor("/tasks/delete");
      for (const w of watchers) {
        const r = await w.p.stop();
        seen[w.d] = [...r.stdout.matchAll(/\/tasks\/[a-z-]+/g)].map((m) => m[0]);
      }
      assert.deepEqual(seen.berthd, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
      assert.deepEqual(seen.berthd, seen.containerd);
    });
  });
}
