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
