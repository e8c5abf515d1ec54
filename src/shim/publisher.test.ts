import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.js";
import { TaskExitSchema, TaskStartSchema } from "../gen/containerd/events/task_pb.js";
import { createTtrpcServer } from "../ttrpc/server.js";
import { createPublisher } from "./publisher.js";

void test("events go out in order, after the caller's turn; flush waits for every one queued", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-publisher-"));
  const server = createTtrpcServer();
  const got: string[] = [];
  server.register(Events, {
    async forward(req) {
      got.push(`${req.envelope?.namespace} ${req.envelope?.topic}`);
      return {};
    },
  });
  const socket = join(dir, "events.sock");
  await server.listen(socket);
  const publisher = createPublisher(socket, () => undefined);
  try {
    publisher.publish("ns", "/tasks/start", TaskStartSchema, { containerId: "c", pid: 1 });
    publisher.publish("ns", "/tasks/exit", TaskExitSchema, { containerId: "c", id: "c", pid: 1 });
    await Promise.resolve();
    assert.deepEqual(got, [], "nothing is sent in the turn that published");
    await publisher.flush();
    assert.deepEqual(got, ["ns /tasks/start", "ns /tasks/exit"]);
    publisher.publish("ns", "/tasks/start", TaskStartSchema, { containerId: "d", pid: 2 });
    await publisher.flush();
    assert.deepEqual(got.length, 3);
  } finally {
    publisher.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function withEventsServer(
  forward: (topic: string) => Promise<void>,
  fn: (socket: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-publisher-"));
  const server = createTtrpcServer();
  server.register(Events, {
    async forward(req) {
      await forward(`${req.envelope?.namespace} ${req.envelope?.topic}`);
      return {};
    },
  });
  const socket = join(dir, "events.sock");
  await server.listen(socket);
  try {
    await fn(socket);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

void test("queued events are written without waiting for each other's replies, in order", async () => {
  const arrived: string[] = [];
  let releaseAll!: () => void;
  const allArrived = new Promise<void>((r) => (releaseAll = r));
  // No reply before all ten requests are in: one event at a time would never get there.
  await withEventsServer(
    async (topic) => {
      arrived.push(topic);
      if (arrived.length === 10) releaseAll();
      await Promise.race([
        allArrived,
        new Promise((_, reject) => setTimeout(() => reject(new Error("not pipelined")), 2000)),
      ]);
    },
    async (socket) => {
      const failures: string[] = [];
      const publisher = createPublisher(socket, (msg) => failures.push(msg));
      try {
        for (let i = 0; i < 10; i++)
          publisher.publish(`ns${i}`, "/tasks/start", TaskStartSchema, { containerId: `c${i}`, pid: i + 1 });
        await publisher.flush();
        assert.deepEqual(
          arrived,
          Array.from({ length: 10 }, (_, i) => `ns${i} /tasks/start`),
        );
        assert.deepEqual(failures, []);
      } finally {
        publisher.close();
      }
    },
  );
});

void test("only the events the daemon refused are sent again", async () => {
  const delivered: string[] = [];
  let refusals = 0;
  await withEventsServer(
    async (topic) => {
      if (topic === "b /tasks/start" && refusals++ === 0) throw new Error("not now");
      delivered.push(topic);
      await Promise.resolve();
    },
    async (socket) => {
      const publisher = createPublisher(socket, () => undefined);
      try {
        for (const ns of ["a", "b", "c"])
          publisher.publish(ns, "/tasks/start", TaskStartSchema, { containerId: ns, pid: 1 });
        await publisher.flush();
        assert.deepEqual(delivered, ["a /tasks/start", "c /tasks/start", "b /tasks/start"]);
        assert.equal(refusals, 2);
      } finally {
        publisher.close();
      }
    },
  );
});
