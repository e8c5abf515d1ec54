import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Task } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import { BerthError, failedPrecondition, isCode } from "../errdefs/errors.js";
import { connectTtrpc, ttrpcService } from "./client.js";
import { createTtrpcServer } from "./server.js";
import { FrameDecoder, MessageType } from "./frame.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RequestSchema } from "../gen/ttrpc/request_pb.js";

const execFileAsync = promisify(execFile);

function socketPath(): { path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "berth-ttrpc-"));
  return { path: join(dir, "s.sock"), done: () => rmSync(dir, { recursive: true, force: true }) };
}

void test("unary calls round-trip, concurrently, with metadata, out of order", async () => {
  const { path, done } = socketPath();
  const server = createTtrpcServer();
  server.register(Task, {
    state: async (req, ctx) => {
      // The later request answers first.
      await new Promise((r) => setTimeout(r, req.id === "slow" ? 50 : 0));
      return { id: req.id, bundle: ctx.metadata.get("containerd-namespace-ttrpc")?.join(",") ?? "", pid: 7 };
    },
  });
  await server.listen(path);
  const client = await connectTtrpc(`unix://${path}`);
  try {
    const task = ttrpcService(client, Task, { metadata: { "containerd-namespace-ttrpc": "ns1" } });
    const [slow, fast] = await Promise.all([task.state({ id: "slow" }), task.state({ id: "fast" })]);
    assert.deepEqual([slow.id, slow.bundle, slow.pid], ["slow", "ns1", 7]);
    assert.deepEqual([fast.id, fast.bundle], ["fast", "ns1"]);
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => task.state({ id: `t${i}` })));
    assert.deepEqual(
      many.map((r) => r.id),
      Array.from({ length: 50 }, (_, i) => `t${i}`),
    );
  } finally {
    client.close();
    await server.close();
    done();
  }
});

void test("a server error keeps its code and message; an unknown method is Unimplemented", async () => {
  const { path, done } = socketPath();
  const server = createTtrpcServer();
  server.register(Task, {
    delete: async () => {
      throw failedPrecondition("cannot delete a running process");
    },
  });
  await server.listen(path);
  const client = await connectTtrpc(path);
  try {
    const task = ttrpcService(client, Task);
    await assert.rejects(task.delete({ id: "x" }), (err: unknown) => {
      assert.ok(isCode(err, "failed-precondition"));
      assert.equal((err as Error).message, "cannot delete a running process: failed precondition");
      return true;
    });
    await assert.rejects(task.pids({ id: "x" }), (err: unknown) => isCode(err, "not-implemented"));
  } finally {
    client.close();
    await server.close();
    done();
  }
});

void test("timeouts are sent as timeout_nano and enforced; a dead peer fails pending calls", async () => {
  const { path, done } = socketPath();
  let seenTimeout = -1n;
  // A peer that reads requests and never answers.
  const silent = createServer((sock) => {
    const decoder = new FrameDecoder();
    sock.on("data", (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type !== MessageType.request) continue;
        seenTimeout = fromBinary(RequestSchema, f.payload).timeoutNano;
      }
    });
    setTimeout(() => sock.destroy(), 300);
  });
  await new Promise<void>((r) => silent.listen(path, r));
  const client = await connectTtrpc(path);
  try {
    const task = ttrpcService(client, Task);
    await assert.rejects(task.state({ id: "x" }, { timeoutMs: 50 }), (err: unknown) =>
      isCode(err, "deadline-exceeded"),
    );
    assert.equal(seenTimeout, 50_000_000n);
    // No timeout: the call waits until the peer hangs up, then fails Unavailable.
    await assert.rejects(task.state({ id: "y" }), (err: unknown) => isCode(err, "unavailable"));
    await client.closed;
    assert.equal(client.isClosed(), true);
    await assert.rejects(task.state({ id: "z" }), (err: unknown) => err instanceof BerthError);
  } finally {
    client.close();
    await new Promise((r) => silent.close(r));
    done();
  }
});

void test("dialling a socket nobody listens on fails Unavailable", async () => {
  const { path, done } = socketPath();
  try {
    await assert.rejects(connectTtrpc(path), (err: unknown) => isCode(err, "unavailable"));
  } finally {
    done();
  }
});

void test("peers of another uid are disconnected before they are heard (SO_PEERCRED)", async () => {
  const { path, done } = socketPath();
  const server = createTtrpcServer({ onError: () => undefined });
  let called = 0;
  server.register(Task, {
    state: async () => {
      called++;
      return {};
    },
  });
  await server.listen(path);
  try {
    // Let anyone reach the socket, so that only the credential check stands in the way.
    chmodSync(dirname(path), 0o777);
    chmodSync(path, 0o666);
    // A client running as nobody sends a well-formed State request and reads what comes back.
    const frame = Buffer.concat([
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 1, 0]),
      Buffer.from(
        toBinary(
          RequestSchema,
          create(RequestSchema, { service: "containerd.task.v2.Task", method: "State" }),
        ),
      ),
    ]);
    frame.writeUInt32BE(frame.length - 10, 0);
    const script = `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
try:
  s.sendall(bytes.fromhex(sys.argv[2])); print(len(s.recv(65536)))
except OSError:
  print(0)`;
    // Async: the server answers on this very event loop.
    const { stdout: out } = await execFileAsync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        script,
        path,
        frame.toString("hex"),
      ],
      { encoding: "utf8", timeout: 10_000 },
    );
    assert.equal(out.trim(), "0", "the server must close without answering");
    assert.equal(called, 0);
    // The same request from our own uid is answered.
    const client = await connectTtrpc(path);
    await ttrpcService(client, Task).state({ id: "x" });
    client.close();
    assert.equal(called, 1);
  } finally {
    await server.close();
    done();
  }
});
