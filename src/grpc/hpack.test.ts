import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Socket } from "node:net";
import { connect as http2Connect } from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeHeaderBlock, HpackDecoder, HpackError } from "./hpack.js";
import { huffmanEncode } from "./huffman.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const limits = { maxTableSize: 4096, maxHeaderListSize: 1 << 20 };

void test("the RFC 7541 C.3 and C.4 request sequences decode, dynamic table included", () => {
  const first = [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ];
  const second = [...first, ["cache-control", "no-cache"]];
  const third = [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ];
  const plain = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
  ];
  const huffman = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
  ];
  for (const blocks of [plain, huffman]) {
    const d = new HpackDecoder(limits);
    assert.deepEqual(d.decode(hex(blocks[0]!)).headers, first);
    assert.deepEqual(d.decode(hex(blocks[1]!)).headers, second);
    assert.deepEqual(d.decode(hex(blocks[2]!)).headers, third);
  }
});

void test("malformed blocks are refused", () => {
  const d = () => new HpackDecoder(limits);
  assert.throws(() => d().decode(Buffer.from([0x80])), HpackError, "index 0");
  assert.throws(() => d().decode(Buffer.from([0xbe])), HpackError, "empty dynamic table");
  assert.throws(() => d().decode(Buffer.from([0x40, 0x05, 0x61])), HpackError, "truncated string");
  assert.throws(
    () => d().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])),
    HpackError,
    "huge integer",
  );
  assert.throws(() => d().decode(Buffer.from([0x3f, 0xe2, 0x1f])), HpackError, "table size above the limit");
  assert.throws(() => d().decode(Buffer.from([0x82, 0x20])), HpackError, "size update after a field");
});

void test("a list over the size limit is reported, and the table stays in step", () => {
  const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 100 });
  const big = Buffer.concat([Buffer.from([0x40, 0x01, 0x78, 0x7f, 200 - 127]), Buffer.alloc(200, 0x79)]);
  const r = d.decode(big);
  assert.equal(r.oversize, true);
  // The entry was still added: index 62 names it.
  const again = d.decode(Buffer.from([0x0f, 62 - 15, 0x01, 0x7a]));
  assert.deepEqual(again.headers, [["x", "z"]]);
});

void test("our encoder's blocks decode to what was encoded", () => {
  const fields: [string, string][] = [
    [":status", "200"],
    ["grpc-status", "13"],
    ["grpc-message", "x".repeat(300)],
  ];
  assert.deepEqual(new HpackDecoder(limits).decode(encodeHeaderBlock(fields)).headers, fields);
  assert.equal(huffmanEncode("").length, 0);
});

/** Header blocks from Node's own HTTP/2 client (nghttp2's HPACK encoder), off a raw socket. */
void test("the decoder agrees with nghttp2's encoder over many requests on one connection", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-hpack-"));
  const path = join(dir, "s.sock");
  const decoder = new HpackDecoder(limits);
  const seen: [string, string][][] = [];
  let fragments: Buffer[] = [];
  const server = createServer((socket: Socket) => {
    let buf = Buffer.alloc(0);
    let off = 24;
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // empty SETTINGS
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= off + 9) {
        const len = buf.readUIntBE(off, 3);
        if (buf.length < off + 9 + len) break;
        const type = buf[off + 3];
        const flags = buf[off + 4]!;
        if (type === 1 || type === 9) {
          let payload = buf.subarray(off + 9, off + 9 + len);
          if (type === 1 && flags & 0x8) payload = payload.subarray(1, payload.length - payload[0]!);
          if (type === 1 && flags & 0x20) payload = payload.subarray(5);
          fragments.push(payload);
          if (flags & 0x4) {
            seen.push(decoder.decode(Buffer.concat(fragments)).headers);
            fragments = [];
          }
        }
        off += 9 + len;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const client = http2Connect("http://localhost", { createConnection: () => connect(path) });
    client.on("error", () => undefined);
    const sent: Record<string, string>[] = [];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const printable = (n: number) =>
      Array.from({ length: n }, () => String.fromCharCode(32 + (rand() % 95))).join("");
    for (let i = 0; i < 60; i++) {
      const h: Record<string, string> = {
        ":method": "POST",
        ":path": `/svc.v1.S/M${i % 7}`,
        "content-type": "application/grpc",
        "containerd-namespace": i % 3 === 0 ? "default" : `ns-${i % 5}`,
        "x-random": printable(rand() % 120),
        [`x-name-${i % 11}`]: printable(rand() % 40),
        "user-agent": "grpc-go/1.0",
      };
      if (i % 10 === 0) h["x-big"] = printable(5000); // larger than the dynamic table
      sent.push(h);
      const req = client.request(h, { endStream: false });
      req.on("error", () => undefined);
    }
    const deadline = Date.now() + 5000;
    while (seen.length < sent.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    client.destroy();
    assert.equal(seen.length, sent.length);
    sent.forEach((h, i) => {
      const got = Object.fromEntries(seen[i]!.filter(([n]) => n !== ":scheme" && n !== ":authority"));
      assert.deepEqual(got, h, `request ${i}`);
    });
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
