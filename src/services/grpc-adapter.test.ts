// The service adapter on a real GrpcServer and a grpc-js client: typed handlers in, containerd's
// codes out, and a reply that cannot be encoded is an Internal error, never a crash.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { GrpcServer } from "../grpc/server.js";
import { Tasks, WaitRequestSchema } from "../gen/containerd/services/tasks/v1/tasks_pb.js";
import { notFound } from "../errdefs/errors.js";
import { registerService } from "./grpc-adapter.js";

void test("handler results, thrown errors and unencodable replies reach the client as statuses", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-adapter-"));
  const path = join(dir, "s.sock");
  const server = new GrpcServer({ maxReceiveMessageLength: 1 << 20, maxSendMessageLength: 1 << 20 });
  const observed: [string, number][] = [];
  registerService(
    server,
    Tasks,
    {
      wait: (req) => {
        if (req.containerId === "gone") return Promise.reject(notFound("container gone"));
        // exit_status is a uint32: -1 cannot be encoded.
        return Promise.resolve({ exitStatus: req.containerId === "bad" ? -1 : 3 });
      },
    },
    { observe: (p, code) => void observed.push([p.slice(p.lastIndexOf("/") + 1), code]) },
  );
  await server.listen(path);
  const client = new grpc.Client(`unix://${path}`, grpc.credentials.createInsecure());
  const wait = (containerId: string) =>
    new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        "/containerd.services.tasks.v1.Tasks/Wait",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(toBinary(WaitRequestSchema, create(WaitRequestSchema, { containerId }))),
        (err, v) => (err ? reject(err) : resolve(v!)),
      ),
    );
  try {
    assert.deepEqual([...(await wait("ok"))], [0x08, 0x03]); // exit_status = 3
    await assert.rejects(wait("gone"), { code: grpc.status.NOT_FOUND, details: "container gone: not found" });
    await assert.rejects(wait("bad"), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INTERNAL);
      assert.match(err.details, /error encoding the reply/);
      return true;
    });
    await assert.rejects(
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          "/containerd.services.tasks.v1.Tasks/Kill",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (err, v) => (err ? reject(err) : resolve(v)),
        ),
      ),
      { code: grpc.status.UNIMPLEMENTED },
    );
    assert.deepEqual(observed, [
      ["Wait", 0],
      ["Wait", 5],
      ["Wait", 13],
      ["Kill", 12],
    ]);
  } finally {
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  }
});
