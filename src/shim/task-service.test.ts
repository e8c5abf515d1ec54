// The shim's Task service in-process, with real runc: two concurrent Creates of one id leave the
// first container intact (the second fails AlreadyExists before runc is asked); the lifecycle runs
// and its events come out in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { OptionsSchema } from "../gen/containerd/runc/options/oci_pb.js";
import { Status } from "../gen/containerd/types/task/task_pb.js";
import { isCode } from "../errdefs/errors.js";
import type { TtrpcCallContext } from "../ttrpc/server.js";
import { ttrpcNamespaceKey } from "../runtime/ttrpc-metadata.js";
import type { Publisher } from "./publisher.js";
import { Reaper } from "./reaper.js";
import { createShimService } from "./task-service.js";
import { canRunContainers, makeTestBundle, type TestBundle } from "./test-bundle.js";

const skip = canRunContainers() ? false : "runc cannot run containers here";

type CreateRequest = Parameters<NonNullable<ReturnType<typeof createShimService>["impl"]["create"]>>[0];

/** A Create of the test bundle, with runc's root in its options and the given rootfs mounts. */
function createRequest(
  tb: TestBundle,
  rootfs: { type: string; source: string; target: string; options: string[] }[],
) {
  return {
    id: tb.id,
    bundle: tb.bundle,
    rootfs,
    terminal: false,
    stdin: "",
    stdout: "",
    stderr: "",
    checkpoint: "",
    parentCheckpoint: "",
    options: {
      typeUrl: OptionsSchema.typeName,
      value: toBinary(OptionsSchema, create(OptionsSchema, { root: tb.runcRoot })),
    },
  } as unknown as CreateRequest;
}

/** The shim's Task service over reaper, its events' topics recorded in topics, and a call context. */
function shimServiceForTest(reaper: Reaper, topics: string[]) {
  // The events sink: records topics (the real publisher's transport is tested elsewhere).
  const publisher: Publisher = {
    publish: (_ns, topic) => void topics.push(topic),
    flush: () => Promise.resolve(),
    close: () => undefined,
  };
  const svc = createShimService({
    namespace: "t",
    reaper,
    publisher,
    onSpawn: (child) => reaper.trackSpawned(child),
    exit: () => undefined,
    log: () => undefined,
  });
  const ctx: TtrpcCallContext = {
    metadata: new Map([[ttrpcNamespaceKey, ["t"]]]),
    signal: new AbortController().signal,
  };
  return { svc, ctx };
}

void test(
  "concurrent Creates of one id: one container, one AlreadyExists; then the lifecycle",
  { skip },
  async () => {
    const tb = makeTestBundle({ args: ["sleep", "1000"] });
    const reaper = new Reaper();
    const topics: string[] = [];
    const { svc, ctx } = shimServiceForTest(reaper, topics);
    const req = createRequest(tb, []);
    try {
      const results = await Promise.allSettled([svc.impl.create!(req, ctx), svc.impl.create!(req, ctx)]);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      const refused = results.find((r) => r.status === "rejected");
      assert.ok(refused && isCode(refused.reason, "already-exists"), String(refused?.status));
      await svc.impl.start!({ id: tb.id, execId: "" } as never, ctx);
      const state = await svc.impl.state!({ id: tb.id, execId: "" } as never, ctx);
      assert.equal(state.status, Status.RUNNING);
      await svc.impl.kill!({ id: tb.id, execId: "", signal: 9, all: false } as never, ctx);
      const waited = await svc.impl.wait!({ id: tb.id, execId: "" } as never, ctx);
      assert.equal(waited.exitStatus, 137);
      await svc.impl.delete!({ id: tb.id, execId: "" } as never, ctx);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
      assert.equal(svc.size, 0);
    } finally {
      reaper.close();
      tb.cleanup();
    }
  },
);

/** True while something is mounted at path (this process's mount namespace). */
function mountedAt(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

for (const hostPid of [false, true]) {
  void test(
    hostPid
      ? "a container in the host's pid namespace keeps its rootfs mounted until Delete"
      : "a container with its own pid namespace has its rootfs unmounted once init exits, before Delete",
    { skip },
    async () => {
      const tb = makeTestBundle({ args: ["sh", "-c", "exit 3"], hostPid });
      // The image beside the bundle, bind-mounted as the rootfs (as a snapshot's mounts would be).
      const image = join(tb.work, "image");
      const rootfs = join(tb.bundle, "rootfs");
      renameSync(rootfs, image);
      mkdirSync(rootfs);
      const reaper = new Reaper();
      const topics: string[] = [];
      const { svc, ctx } = shimServiceForTest(reaper, topics);
      const req = createRequest(tb, [{ type: "bind", source: image, target: "", options: ["rbind", "rw"] }]);
      try {
        await svc.impl.create!(req, ctx);
        assert.ok(mountedAt(rootfs), "mounted by Create");
        await svc.impl.start!({ id: tb.id, execId: "" } as never, ctx);
        assert.equal((await svc.impl.wait!({ id: tb.id, execId: "" } as never, ctx)).exitStatus, 3);
        if (hostPid) {
          // Its processes may outlive init: the rootfs stays until Delete.
          await new Promise((r) => setTimeout(r, 200));
          assert.ok(mountedAt(rootfs), "still mounted after the exit");
        } else {
          const deadline = Date.now() + 10_000;
          while (mountedAt(rootfs)) {
            assert.ok(Date.now() < deadline, "the rootfs is still mounted 10 s after the exit");
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        const deleted = await svc.impl.delete!({ id: tb.id, execId: "" } as never, ctx);
        assert.equal(deleted.exitStatus, 3);
        assert.equal(mountedAt(rootfs), false, "Delete answers once the rootfs is unmounted");
        await svc.retired();
        assert.deepEqual(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
      } finally {
        if (mountedAt(rootfs)) execFileSync("umount", [rootfs]);
        reaper.close();
        tb.cleanup();
      }
    },
  );
}
