import { test } from "node:test";
import assert from "node:assert/strict";
import { initPlugins, orderPlugins, PluginSkipped, type PluginRegistration } from "./plugin.js";

const opts = { root: "/nonexistent/root", state: "/nonexistent/state", config: () => ({}) };

void test("plugins initialise after the types they require, whatever the registration order", async () => {
  const order: string[] = [];
  const regs: PluginRegistration[] = [
    {
      type: "io.containerd.grpc.v1",
      id: "svc",
      requires: ["io.containerd.metadata.v1"],
      init: () => order.push("svc"),
    },
    { type: "io.containerd.grpc.v1", id: "introspection", requires: ["*"], init: () => order.push("intro") },
    {
      type: "io.containerd.metadata.v1",
      id: "md",
      requires: ["io.containerd.content.v1"],
      init: () => order.push("md"),
    },
    { type: "io.containerd.content.v1", id: "content", init: () => order.push("content") },
  ];
  assert.deepEqual(
    orderPlugins(regs).map((r) => r.id),
    ["content", "md", "svc", "introspection"],
  );
  await initPlugins(regs, opts);
  assert.deepEqual(order, ["content", "md", "svc", "intro"]);
});

void test("an init error is recorded, the others still start, and dependants fail with the cause", async () => {
  const graph = await initPlugins(
    [
      {
        type: "io.containerd.content.v1",
        id: "content",
        init: () => {
          throw new Error("disk on fire");
        },
      },
      {
        type: "io.containerd.metadata.v1",
        id: "md",
        requires: ["io.containerd.content.v1"],
        init: (ic) => ic.get("io.containerd.content.v1"),
      },
      { type: "io.containerd.event.v1", id: "exchange", init: () => "exchange" },
      {
        type: "io.containerd.snapshotter.v1",
        id: "zfs",
        init: () => {
          throw new PluginSkipped("zfs is not the root filesystem");
        },
      },
    ],
    opts,
  );
  const byId = new Map(graph.states.map((s) => [s.registration.id, s]));
  assert.equal(byId.get("content")?.error?.message, "disk on fire");
  assert.match(byId.get("md")?.error?.message ?? "", /content\.v1\.content failed: disk on fire/);
  assert.equal(byId.get("exchange")?.error, undefined);
  assert.equal(graph.get("io.containerd.event.v1"), "exchange");
  assert.ok(byId.get("zfs")?.error instanceof PluginSkipped);
  assert.throws(() => graph.get("io.containerd.content.v1"), /failed: disk on fire/);
});

void test("disabled plugins are not initialised and not reported", async () => {
  let ran = false;
  const graph = await initPlugins(
    [
      {
        type: "io.containerd.event.v1",
        id: "exchange",
        init: () => {
          ran = true;
        },
      },
    ],
    { ...opts, disabled: ["io.containerd.event.v1.exchange"] },
  );
  assert.equal(ran, false);
  assert.equal(graph.states.length, 0);
});

void test("a dependency cycle is refused", () => {
  assert.throws(
    () =>
      orderPlugins([
        { type: "io.containerd.content.v1", id: "a", requires: ["io.containerd.metadata.v1"], init: () => 1 },
        { type: "io.containerd.metadata.v1", id: "b", requires: ["io.containerd.content.v1"], init: () => 2 },
      ]),
    /cycle/,
  );
});
