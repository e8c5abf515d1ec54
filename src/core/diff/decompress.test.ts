import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { gzipSync } from "node:zlib";
import { compress as zstdCompress } from "zstd-napi";
import { isCode } from "../../errdefs/errors.js";
import { decompressStream, detectCompression, layerCompression } from "./decompress.js";

void test("layer media types map to their compression", () => {
  const table: Array<[string, string]> = [
    ["application/vnd.oci.image.layer.v1.tar", "none"],
    ["application/vnd.oci.image.layer.v1.tar+gzip", "gzip"],
    ["application/vnd.oci.image.layer.v1.tar+zstd", "zstd"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar", "none"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"],
    ["application/vnd.docker.image.rootfs.diff.tar", "none"],
    ["application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"],
    ["application/vnd.docker.image.rootfs.foreign.diff.tar", "none"],
    ["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"],
  ];
  for (const [mediaType, kind] of table) assert.equal(layerCompression(mediaType), kind, mediaType);
  for (const bad of [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.layer.v1.tar+bzip2",
    "application/vnd.oci.image.layer.v1.tar+encrypted",
    "",
  ]) {
    assert.throws(
      () => layerCompression(bad),
      (err) => isCode(err, "invalid-argument") && /unsupported media type/.test((err as Error).message),
    );
  }
});

void test("detection by magic bytes, as containerd's DetectCompression", () => {
  assert.equal(detectCompression(Buffer.from([0x1f, 0x8b, 0x08, 0]), true), "gzip");
  assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), true), "zstd");
  assert.equal(detectCompression(Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]), true), "zstd");
  assert.equal(detectCompression(Buffer.from("etc/passwd"), true), "none");
  assert.equal(detectCompression(Buffer.from([0x1f]), false), null);
  assert.equal(detectCompression(Buffer.from([0x1f]), true), "none");
});

async function collect(input: Buffer[], kind: "none" | "gzip" | "zstd"): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from(input), decompressStream(kind), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}

function split(buf: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length; off += n) out.push(buf.subarray(off, off + n));
  return out;
}

void test("gzip, zstd and plain streams decompress whatever the media type said", async () => {
  const data = Buffer.from("tar bytes ".repeat(50000));
  const gz = gzipSync(data);
  const zs = zstdCompress(data);
  for (const kind of ["none", "gzip", "zstd"] as const) {
    assert.deepEqual(await collect([gz], kind), data, `gzip as ${kind}`);
    assert.deepEqual(await collect([zs], kind), data, `zstd as ${kind}`);
    assert.deepEqual(await collect([data], kind), data, `plain as ${kind}`);
    // Magic split across chunks.
    assert.deepEqual(await collect(split(gz, 1), kind), data, `gzip bytewise as ${kind}`);
    assert.deepEqual(await collect(split(zs, 3), kind), data, `zstd in 3s as ${kind}`);
  }
  assert.deepEqual(await collect([Buffer.from([0x1f])], "gzip"), Buffer.from([0x1f]));
  assert.deepEqual(await collect([], "gzip"), Buffer.alloc(0));
  // Concatenated gzip members are one stream.
  assert.deepEqual(await collect([gzipSync("a"), gzipSync("b")], "gzip"), Buffer.from("ab"));
});

void test("corrupt and truncated streams fail with InvalidArgument", async () => {
  const data = Buffer.from("x".repeat(100000));
  const gz = gzipSync(data);
  const zs = zstdCompress(data);
  for (const [name, input] of [
    ["truncated gzip", gz.subarray(0, gz.length - 10)],
    ["corrupt gzip", Buffer.concat([gz.subarray(0, 10), Buffer.alloc(50, 0xff)])],
    ["truncated zstd", zs.subarray(0, zs.length - 3)],
    ["corrupt zstd", Buffer.concat([zs.subarray(0, 6), Buffer.alloc(50, 0xff)])],
  ] as const) {
    await assert.rejects(collect([input], "gzip"), (err) => isCode(err, "invalid-argument"), name);
  }
});

void test("a zstd bomb is decompressed only as fast as it is read", async () => {
  // 1 GiB of zeros is a few tens of KiB compressed; reading 4 MiB must not inflate the rest.
  const bomb = zstdCompress(Buffer.alloc(256 * 1024 * 1024));
  const input = Buffer.concat([bomb, bomb, bomb, bomb]);
  const stream = Readable.from([input]).pipe(decompressStream("zstd"));
  let read = 0;
  const before = process.memoryUsage().arrayBuffers;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    read += chunk.length;
    if (read >= 4 * 1024 * 1024) break;
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 64 * 1024 * 1024, `buffered ${grown} bytes`);
});
