// GrpcServer against a real gRPC client (grpc-js; the stock Go ctr drives it in test/), and
// against raw sockets for what a client library would never send.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import * as http2 from "node:http2";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { GrpcServer, encodeGrpcMessage, parseGrpcTimeout, type ServerCall } from "./server.js";
import { GrpcCode } from "../errdefs/grpc-status.js";
import { encodeHeaderBlock } from "./hpack.js";
import { frame, FrameType } from "./http2-frames.js";

const id = (b: Buffer) => b;

async function withServer(
  setup: (server: GrpcServer) => void,
  run: (client: grpc.Client, server: GrpcServer, path: string) => Promise<void>,
  opts = { maxReceiveMessageLength: 64 << 20, maxSendMessageLength: 64 << 20 },
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-grpc-"));
  const path = join(dir, "s.sock");
  const server = new GrpcServer(opts);
  setup(server);
  await server.listen(path);
  const client = new grpc.Client(`unix://${path}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
  });
  try {
    await run(client, server, path);
  } finally {
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

function unary(
  client: grpc.Client,
  path: string,
  req: Buffer,
  md = new grpc.Metadata(),
  options: grpc.CallOptions = {},
) {
  return new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest(path, id, id, req, md, options, (err, value) =>
      err ? reject(err) : resolve(value!),
    ),
  );
}

const echo = (call: ServerCall, req: Buffer | undefined) => {
  call.write(req!);
  call.finish(GrpcCode.OK);
};

void test("unary calls: bytes and metadata in, bytes out, many concurrent", async () => {
  await withServer(
    (s) => {
      s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo });
      s.register("/t.S/Meta", {
        requestStream: false,
        responseStream: false,
        handler: (call) => {
          call.write(
            Buffer.from(`${call.metadata.get("containerd-namespace")}|${call.metadata.get("x-bin")}`),
          );
          call.finish(GrpcCode.OK);
        },
      });
    },
    async (client) => {
      assert.deepEqual(await unary(client, "/t.S/Echo", Buffer.from("hello")), Buffer.from("hello"));
      assert.deepEqual(await unary(client, "/t.S/Echo", Buffer.alloc(0)), Buffer.alloc(0));
      const big = Buffer.alloc(5 << 20, 7); // larger than both windows: flow control both ways
      assert.deepEqual(await unary(client, "/t.S/Echo", big), big);
      const md = new grpc.Metadata();
      md.set("containerd-namespace", "ns1");
      const replies = await Promise.all(
        Array.from({ length: 200 }, (_, i) => unary(client, "/t.S/Echo", Buffer.from(`m${i}`))),
      );
      replies.forEach((r, i) => assert.equal(r.toString(), `m${i}`));
      assert.equal((await unary(client, "/t.S/Meta", Buffer.alloc(0), md)).toString(), "ns1|undefined");
    },
  );
});

// A client in a worker thread: it can read while the server's thread is blocked.
const blockingClientSource = `
const { workerData, parentPort } = require("node:worker_threads");
const grpc = require(workerData.grpcModule);
const client = new grpc.Client("unix://" + workerData.socket, grpc.credentials.createInsecure());
client.makeUnaryRequest("/t.S/Block", (b) => b, (b) => b, Buffer.from("x"), new grpc.Metadata(), (err, reply) => {
  Atomics.store(workerData.flag, 0, 1);
  Atomics.notify(workerData.flag, 0);
  parentPort.postMessage(err ? String(err) : reply.toString());
  client.close();
});
`;

void test("a response leaves as soon as it ends, before the code after finish() runs", async () => {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  let wait: string | undefined;
  await withServer(
    (s) =>
      s.register("/t.S/Block", {
        requestStream: false,
        responseStream: false,
        handler: (call, req) => {
          // As the service adapter does: the reply comes from a promise, in a later microtask.
          void Promise.resolve().then(() => {
            call.write(Buffer.concat([req!, Buffer.from("y")]));
            call.finish(GrpcCode.OK);
            // Blocks this thread until the client has the reply: "timed-out" if it is still
            // held back (it used to wait for the end of the turn, after metrics and logs).
            wait = Atomics.wait(flag, 0, 0, 10_000);
          });
        },
      }),
    async (_client, _server, socket) => {
      const grpcModule = createRequire(import.meta.url).resolve("@grpc/grpc-js");
      const worker = new Worker(blockingClientSource, {
        eval: true,
        workerData: { socket, flag, grpcModule },
      });
      try {
        const [reply] = (await once(worker, "message")) as [string];
        assert.equal(reply, "xy");
        assert.equal(wait, "ok");
      } finally {
        await worker.terminate();
      }
    },
  );
});

void test("errors carry code and a percent-encoded message; unknown methods are Unimplemented", async () => {
  await withServer(
    (s) => {
      s.register("/t.S/Fail", {
        requestStream: false,
        responseStream: false,
        handler: (call) => call.finish(GrpcCode.NOT_FOUND, 'container "ü%x" in namespace: not found'),
      });
      s.register("/t.S/Throw", {
        requestStream: false,
        responseStream: false,
        handler: () => {
          throw new Error("boom");
        },
      });
    },
    async (client) => {
      await assert.rejects(unary(client, "/t.S/Fail", Buffer.alloc(0)), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.NOT_FOUND);
        assert.equal(err.details, 'container "ü%x" in namespace: not found');
        return true;
      });
      await assert.rejects(unary(client, "/t.S/Throw", Buffer.alloc(0)), {
        code: grpc.status.UNKNOWN,
        details: "boom",
      });
      await assert.rejects(unary(client, "/t.S/Nope", Buffer.alloc(0)), {
        code: grpc.status.UNIMPLEMENTED,
        details: "unknown method Nope for service t.S",
      });
      await assert.rejects(unary(client, "/x.Y/Z", Buffer.alloc(0)), {
        code: grpc.status.UNIMPLEMENTED,
        details: "unknown service x.Y",
      });
    },
  );
  assert.equal(encodeGrpcMessage("a%b\n"), "a%25b%0A");
});

void test("server streaming sends every message under flow control, then OK", async () => {
  await withServer(
    (s) =>
      s.register("/t.S/Stream", {
        requestStream: false,
        responseStream: true,
        handler: (call, req) => {
          const n = req!.readUInt32BE(0);
          void (async () => {
            for (let i = 0; i < n; i++) {
              const m = Buffer.alloc(64 * 1024, i % 256);
              if (!call.write(m)) await call.drain();
            }
            call.finish(GrpcCode.OK);
          })();
        },
      }),
    async (client) => {
      const req = Buffer.alloc(4);
      req.writeUInt32BE(300, 0); // 19 MiB: past the client's windows many times
      const stream = client.makeServerStreamRequest("/t.S/Stream", id, id, req);
      let count = 0;
      stream.on("data", (m: Buffer) => {
        assert.equal(m.length, 64 * 1024);
        assert.equal(m[0], count % 256);
        count++;
      });
      await once(stream, "status");
      assert.equal(count, 300);
    },
  );
});

void test("client streaming: a message larger than the stream window arrives whole, in order", async () => {
  await withServer(
    (s) =>
      s.register("/t.S/Sum", {
        requestStream: true,
        responseStream: false,
        handler: (call) => {
          void (async () => {
            let total = 0;
            let messages = 0;
            for await (const m of call.requests()) {
              total += m.length;
              messages++;
            }
            call.write(Buffer.from(`${messages}:${total}`));
            call.finish(GrpcCode.OK);
          })();
        },
      }),
    async (client) => {
      const result = new Promise<Buffer>((resolve, reject) => {
        const stream = client.makeClientStreamRequest("/t.S/Sum", id, id, (err, v) =>
          err ? reject(err) : resolve(v!),
        );
        stream.write(Buffer.alloc(3 << 20)); // 3 MiB, three times the stream window
        for (let i = 0; i < 50; i++) stream.write(Buffer.alloc(100 * 1024));
        stream.end();
      });
      assert.equal((await result).toString(), `51:${(3 << 20) + 50 * 100 * 1024}`);
    },
  );
});

void test("bidi: each request answered before the next is sent", async () => {
  await withServer(
    (s) =>
      s.register("/t.S/Chat", {
        requestStream: true,
        responseStream: true,
        handler: (call) => {
          void (async () => {
            for await (const m of call.requests()) call.write(Buffer.concat([Buffer.from("re:"), m]));
            call.finish(GrpcCode.OK);
          })();
        },
      }),
    async (client) => {
      const stream = client.makeBidiStreamRequest("/t.S/Chat", id, id);
      const replies: string[] = [];
      for (let i = 0; i < 5; i++) {
        stream.write(Buffer.from(`q${i}`));
        const [m] = (await once(stream, "data")) as [Buffer];
        replies.push(m.toString());
      }
      stream.end();
      await once(stream, "status");
      assert.deepEqual(replies, ["re:q0", "re:q1", "re:q2", "re:q3", "re:q4"]);
    },
  );
});

void test("a cancelled call aborts the handler's signal; a deadline ends it with DeadlineExceeded", async () => {
  let aborted: () => void;
  const abortSeen = new Promise<void>((resolve) => (aborted = resolve));
  await withServer(
    (s) =>
      s.register("/t.S/Hang", {
        requestStream: false,
        responseStream: false,
        handler: (call) => call.signal.addEventListener("abort", () => aborted()),
      }),
    async (client, server) => {
      const call = client.makeUnaryRequest("/t.S/Hang", id, id, Buffer.alloc(0), () => undefined);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(server.quietFor(), 0, "a call is in flight");
      call.cancel();
      await abortSeen;
      assert.ok(server.quietFor() > 0, "no call in flight");
      await assert.rejects(
        unary(client, "/t.S/Hang", Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 100 }),
        {
          code: grpc.status.DEADLINE_EXCEEDED,
        },
      );
    },
  );
  assert.equal(parseGrpcTimeout("100m"), 100);
  assert.equal(parseGrpcTimeout("2S"), 2000);
  assert.equal(parseGrpcTimeout("123456789n"), undefined);
});

void test("messages over the size limits are ResourceExhausted", async () => {
  await withServer(
    (s) => s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo }),
    async (client) => {
      await assert.rejects(unary(client, "/t.S/Echo", Buffer.alloc(2000)), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(err.details, /received message larger than max \(2000 vs\. 1000\)/);
        return true;
      });
      await assert.rejects(unary(client, "/t.S/Echo", Buffer.alloc(600)), {
        code: grpc.status.RESOURCE_EXHAUSTED,
      });
      assert.equal((await unary(client, "/t.S/Echo", Buffer.alloc(400))).length, 400);
    },
    { maxReceiveMessageLength: 1000, maxSendMessageLength: 500 },
  );
});

void test("shutdown lets the in-flight call finish and refuses new connections", async () => {
  let release: () => void = () => undefined;
  await withServer(
    (s) =>
      s.register("/t.S/Slow", {
        requestStream: false,
        responseStream: false,
        handler: (call) => {
          release = () => echo(call, Buffer.from("done"));
        },
      }),
    async (client, server, path) => {
      const pending = unary(client, "/t.S/Slow", Buffer.alloc(0));
      await new Promise((r) => setTimeout(r, 50));
      let stopped = false;
      // As berthd stops: force the rest down as soon as the graceful part is over.
      const stopping = server.shutdown().then(() => {
        stopped = true;
        server.forceShutdown();
      });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(stopped, false);
      // The reply is sent from a later turn, as the service adapter sends them.
      void Promise.resolve().then(release);
      assert.equal((await pending).toString(), "done");
      await stopping;
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(path);
        s.on("error", () => resolve(true));
        s.on("connect", () => {
          s.destroy();
          resolve(false);
        });
      });
      assert.equal(refused, true);
    },
  );
});

void test("a connection that is not HTTP/2, or breaks the protocol, is closed without harm", async () => {
  await withServer(
    (s) => s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo }),
    async (client, _server, path) => {
      const rawExchange = async (bytes: Buffer) => {
        const s = connect(path);
        const chunks: Buffer[] = [];
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("error", () => undefined);
        await once(s, "connect");
        s.write(bytes);
        await once(s, "close");
        return Buffer.concat(chunks);
      };
      const isGoAway = (out: Buffer, code: number) => {
        for (let off = 0; off + 9 <= out.length; off += 9 + out.readUIntBE(off, 3)) {
          if (out[off + 3] === 7) return out.readUInt32BE(off + 13) === code;
        }
        return false;
      };
      const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
      const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
      assert.ok(isGoAway(await rawExchange(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), 1));
      // A frame larger than the 16 KiB we accept.
      assert.ok(
        isGoAway(
          await rawExchange(Buffer.concat([preface, settings, Buffer.from([0, 0x80, 0, 0, 0, 0, 0, 0, 1])])),
          6,
        ),
      );
      // A header block that is not HPACK: COMPRESSION_ERROR.
      assert.ok(
        isGoAway(
          await rawExchange(
            Buffer.concat([preface, settings, Buffer.from([0, 0, 1, 1, 5, 0, 0, 0, 1, 0x80])]),
          ),
          9,
        ),
      );
      // DATA on a stream never opened.
      assert.ok(
        isGoAway(
          await rawExchange(Buffer.concat([preface, settings, Buffer.from([0, 0, 1, 0, 0, 0, 0, 0, 9, 0])])),
          1,
        ),
      );
      // The server still serves real clients afterwards.
      assert.equal((await unary(client, "/t.S/Echo", Buffer.from("ok"))).toString(), "ok");
    },
  );
});

void test("a PING is acknowledged with its payload, alone or along with a response", async () => {
  await withServer(
    (s) => s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo }),
    async (_client, _server, path) => {
      const s = connect(path);
      s.on("error", () => undefined);
      await once(s, "connect");
      let received = Buffer.alloc(0);
      const acks = () => {
        const found: string[] = [];
        for (let off = 0; off + 9 <= received.length; off += 9 + received.readUIntBE(off, 3)) {
          if (received[off + 3] === FrameType.PING && received[off + 4] === 1) {
            found.push(received.subarray(off + 9, off + 17).toString());
          }
        }
        return found;
      };
      s.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
      s.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
          frame(FrameType.SETTINGS, 0, 0),
          frame(FrameType.PING, 0, 0, Buffer.from("12345678")),
        ]),
      );
      while (acks().length < 1) await new Promise((r) => setTimeout(r, 5));
      const headers = encodeHeaderBlock([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/t.S/Echo"],
        ["content-type", "application/grpc"],
      ]);
      s.write(
        Buffer.concat([
          frame(FrameType.PING, 0, 0, Buffer.from("abcdefgh")),
          frame(FrameType.HEADERS, 0x4, 1, headers),
          frame(FrameType.DATA, 0x1, 1, Buffer.from([0, 0, 0, 0, 1, 0x61])),
        ]),
      );
      while (acks().length < 2) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(acks(), ["12345678", "abcdefgh"]);
      s.destroy();
    },
  );
});

void test("a client that opens its windows but never reads cannot make the server buffer without bound", async () => {
  let written = 0;
  let blocked: () => void;
  const blockedAt = new Promise<void>((resolve) => (blocked = resolve));
  await withServer(
    (s) =>
      s.register("/t.S/Flood", {
        requestStream: false,
        responseStream: true,
        handler: (call) => {
          const chunk = Buffer.alloc(64 * 1024);
          const pump = () => {
            while (!call.finished) {
              written += chunk.length;
              if (!call.write(chunk)) {
                blocked();
                return;
              }
            }
          };
          pump();
        },
      }),
    async (_client, _server, path) => {
      const s = connect(path);
      s.on("error", () => undefined);
      await once(s, "connect");
      s.pause(); // never read what the server sends
      const settings = Buffer.alloc(6);
      settings.writeUInt16BE(4, 0); // INITIAL_WINDOW_SIZE
      settings.writeUInt32BE(0x7fffffff, 2);
      const windowUpdate = Buffer.alloc(4);
      windowUpdate.writeUInt32BE(0x7fffffff - 65535, 0);
      const headers = encodeHeaderBlock([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/t.S/Flood"],
        ["content-type", "application/grpc"],
      ]);
      s.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
          frame(FrameType.SETTINGS, 0, 0, settings),
          frame(FrameType.WINDOW_UPDATE, 0, 0, windowUpdate),
          frame(FrameType.HEADERS, 0x4, 1, headers),
          frame(FrameType.DATA, 0x1, 1, Buffer.from([0, 0, 0, 0, 0])),
        ]),
      );
      await blockedAt;
      // The socket's own buffers, 1 MiB framed ahead and the stream's 256 KiB high-water mark.
      assert.ok(written < 8 << 20, `${written} bytes were accepted from the handler`);
      s.destroy();
    },
  );
});

void test("a deadline ends a streaming handler's requests; a deadline past 24 days is none", async () => {
  let handlerSaw: string | undefined;
  let ended: () => void;
  const handlerEnded = new Promise<void>((resolve) => (ended = resolve));
  await withServer(
    (s) => {
      s.register("/t.S/Collect", {
        requestStream: true,
        responseStream: false,
        handler: (call) => {
          void (async () => {
            try {
              for await (const m of call.requests()) void m;
              handlerSaw = "end";
            } catch (err) {
              handlerSaw = (err as { code?: string }).code;
            }
            ended();
          })();
        },
      });
      s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo });
    },
    async (client, _server, socket) => {
      // Node's own HTTP/2 client, which (unlike a gRPC client) does not cancel the call when the
      // deadline passes: only the server's deadline can end it.
      const session = http2.connect("http://berth", { createConnection: () => connect(socket) });
      try {
        const req = session.request({
          ":method": "POST",
          ":path": "/t.S/Collect",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": "100m",
        });
        req.write(Buffer.from([0, 0, 0, 0, 3, ...Buffer.from("one")])); // and then nothing, without ending
        // A trailers-only response: its one header block is the response's.
        const [headers] = (await once(req, "response")) as [http2.IncomingHttpHeaders];
        assert.equal(headers["grpc-status"], String(GrpcCode.DEADLINE_EXCEEDED));
        req.close();
      } finally {
        session.destroy();
      }
      await handlerEnded;
      assert.equal(handlerSaw, "ABORT_ERR");
      const far = Date.now() + 30 * 24 * 3600 * 1000;
      const reply = await unary(client, "/t.S/Echo", Buffer.from("late"), new grpc.Metadata(), {
        deadline: far,
      });
      assert.equal(reply.toString(), "late");
    },
  );
});

void test("a header block of empty CONTINUATION frames is cut off", async () => {
  await withServer(
    (s) => s.register("/t.S/Echo", { requestStream: false, responseStream: false, handler: echo }),
    async (_client, _server, path) => {
      const s = connect(path);
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      s.on("error", () => undefined); // EPIPE: the server stops reading before the flood ends
      const closed = new Promise((resolve) => s.on("close", resolve));
      await once(s, "connect");
      const empty = frame(FrameType.CONTINUATION, 0, 1);
      s.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
          frame(FrameType.SETTINGS, 0, 0),
          frame(FrameType.HEADERS, 0, 1, Buffer.from([0x83])),
          Buffer.concat(Array.from({ length: 200_000 }, () => empty)),
        ]),
      );
      await closed;
      const out = Buffer.concat(chunks);
      let code: number | undefined;
      for (let off = 0; off + 9 <= out.length; off += 9 + out.readUIntBE(off, 3)) {
        if (out[off + 3] === FrameType.GOAWAY) code = out.readUInt32BE(off + 13);
      }
      assert.equal(code, 0xb); // ENHANCE_YOUR_CALM
    },
  );
});
