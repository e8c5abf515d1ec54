// Proves the registry fixtures valid with the real tools: push each test image to a real
// docker-registry over its HTTP API, read the manifests back byte for byte, pull with the stock
// `ctr images pull --plain-http --print-chainid` into a real containerd (unpacking into overlayfs),
// compare the chain ID ctr prints with ours, and check unpacked trees file by file.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { createGunzip, gunzipSync } from "node:zlib";
import { decompress as zstdDecompress } from "zstd-napi";
import { makeBlob, sha256Digest, type Blob } from "../fixtures/descriptor.js";
import { MediaTypes } from "../fixtures/media-types.js";
import {
  fetchBlob,
  fetchManifest,
  pushBlob,
  pushImage,
  pushIndex,
  pushManifest,
  RegistryError,
  type ImagePushResult,
} from "../fixtures/registry-push.js";
import {
  ARCH_MARKER_PATH,
  MiB,
  busyboxTestImage,
  digestRef,
  imageRef,
  largeTestImage,
  multiLayerTestImage,
  multiPlatformTestIndex,
  type ExpectedTree,
  type RegistryImage,
} from "../fixtures/test-images.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { ctrOk } from "../harness/ctr.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { checkRootfs } from "../harness/rootfs-check.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";

let registryHandle: RegistryHandle | undefined;
let containerdHandle: ContainerdHandle | undefined;
let workDir: string | undefined;

before(async () => {
  // Assigned one by one, so that after() stops whatever started even if another start failed.
  await Promise.all([
    startRegistry().then((r) => (registryHandle = r)),
    startContainerd().then((c) => (containerdHandle = c)),
    makeTempDir("registry-fixtures").then((d) => (workDir = d)),
  ]);
});

after(async () => {
  // `ctr images mount` mounts live under work: unmount them before containerd's dirs go away.
  if (workDir) await removeTempDir(workDir).catch(() => undefined);
  await Promise.allSettled([registryHandle?.stop(), containerdHandle?.stop()]);
});

function running(): { registry: RegistryHandle; containerd: ContainerdHandle; work: string } {
  assert.ok(registryHandle && containerdHandle && workDir, "registry, containerd or work dir did not start");
  return { registry: registryHandle, containerd: containerdHandle, work: workDir };
}

/** chainID computed here, straight from the diffIDs (independent of the fixtures' helper). */
function directChainId(diffIds: readonly string[]): string {
  let chain = "";
  for (const diffId of diffIds) {
    chain =
      chain === "" ? diffId : `sha256:${createHash("sha256").update(`${chain} ${diffId}`).digest("hex")}`;
  }
  return chain;
}

/** Runs `ctr images pull --plain-http --print-chainid` and returns the chain IDs it printed. */
async function pull(namespace: string, ref: string, extra: readonly string[] = []): Promise<string[]> {
  const { containerd } = running();
  const out = await ctrOk(
    containerd.address,
    ["images", "pull", "--plain-http", "--print-chainid", ...extra, ref],
    { namespace, timeoutMs: 60_000 },
  );
  return [...out.matchAll(/image chain ID: (sha256:[0-9a-f]{64})/g)].map((m) => m[1] ?? "");
}

/** The registry must hand back exactly the bytes we pushed, by tag and by digest. */
async function assertManifestRoundTrip(repo: string, tag: string, doc: Blob): Promise<void> {
  const { registry } = running();
  for (const reference of [tag, doc.descriptor.digest]) {
    const got = await fetchManifest(registry.url, repo, reference);
    assert.equal(got.mediaType, doc.descriptor.mediaType, `${repo}:${reference} content type`);
    assert.equal(got.digest, doc.descriptor.digest, `${repo}:${reference} digest header`);
    assert.ok(got.bytes.equals(doc.bytes), `${repo}:${reference}: manifest bytes differ from those pushed`);
  }
}

function assertUploadedAll(result: ImagePushResult, image: RegistryImage): void {
  assert.equal(result.manifestDigest, image.manifestDigest);
  assert.deepEqual(
    result.blobs.map((b) => b.digest),
    [image.configDigest, ...image.layerDescriptors.map((d) => d.digest)],
  );
}

/** ctr's image record for ref in namespace: its target digest and media type. */
async function imageTarget(namespace: string, ref: string): Promise<{ digest: string; mediaType: string }> {
  const { containerd } = running();
  const out = await ctrOk(containerd.address, ["images", "ls"], { namespace });
  const line = out.split("\n").find((l) => l.startsWith(`${ref} `));
  assert.ok(line, `ctr images ls has no ${ref}:\n${out}`);
  const [, type, digest] = line.split(/\s+/);
  return { digest: digest ?? "", mediaType: type ?? "" };
}

let mountCount = 0;

/**
 * Mounts the image's rootfs read-only with the stock `ctr images mount` (a leased view snapshot,
 * safe from containerd's GC while mounted), passes the mount point to fn, then
 * `ctr images unmount --rm` (unmount, drop the view and its lease).
 */
async function withMountedImage<T>(
  namespace: string,
  ref: string,
  platform: string,
  fn: (root: string) => Promise<T>,
): Promise<T> {
  const { containerd, work } = running();
  const target = join(work, `mnt-${++mountCount}`);
  await mkdir(target);
  await ctrOk(containerd.address, ["images", "mount", "--platform", platform, ref, target], { namespace });
  try {
    return await fn(target);
  } finally {
    await ctrOk(containerd.address, ["images", "unmount", "--rm", target], { namespace });
  }
}

async function assertTree(
  namespace: string,
  ref: string,
  platform: string,
  expected: ExpectedTree,
): Promise<void> {
  const problems = await withMountedImage(namespace, ref, platform, (root) => checkRootfs(root, expected));
  assert.deepEqual(problems, [], `unpacked rootfs differs:\n${problems.join("\n")}`);
}

void test("layer blobs decompress to their diffIDs, and chain IDs match a direct computation", async () => {
  for (const image of [await multiLayerTestImage("gzip"), await multiLayerTestImage("zstd")]) {
    assert.equal(image.layerDescriptors.length, 4, "busybox + 3 layers");
    const compression = image.name.endsWith("zstd") ? "zstd" : "gzip";
    image.layerBlobs.forEach((blob, i) => {
      assert.ok("bytes" in blob);
      assert.equal(
        blob.descriptor.mediaType,
        compression === "zstd" ? MediaTypes.ociLayerZstd : MediaTypes.ociLayerGzip,
      );
      assert.equal(sha256Digest(blob.bytes), blob.descriptor.digest);
      const tar = compression === "zstd" ? zstdDecompress(blob.bytes) : gunzipSync(blob.bytes);
      assert.equal(sha256Digest(tar), image.diffIds[i], `${image.name} layer ${i}`);
    });
    assert.equal(image.chainId, directChainId(image.diffIds));
  }
  const [gz, zst] = [await multiLayerTestImage("gzip"), await multiLayerTestImage("zstd")];
  assert.deepEqual(gz.diffIds, zst.diffIds, "same tars under both compressions");
  assert.notEqual(gz.manifestDigest, zst.manifestDigest);
});

void test("busybox in OCI and Docker media types: push, byte-exact manifests, HEAD skips, ctr pull", async () => {
  const { registry } = running();
  const oci = await busyboxTestImage("oci");
  const docker = await busyboxTestImage("docker");
  assert.equal(docker.manifest.descriptor.mediaType, MediaTypes.dockerManifest);
  assert.equal(docker.layerDescriptors[0]?.mediaType, MediaTypes.dockerLayerGzip);

  const first = await pushImage(registry.url, oci.repo, oci.tag, oci);
  assertUploadedAll(first, oci);
  assert.ok(
    first.blobs.every((b) => !b.skipped),
    "a fresh repository has no blobs",
  );
  // Same repository, same layer and config bytes: HEAD finds them and nothing is uploaded again.
  const second = await pushImage(registry.url, docker.repo, docker.tag, docker);
  assertUploadedAll(second, docker);
  assert.ok(
    second.blobs.every((b) => b.skipped),
    "docker flavour reuses the OCI flavour's blobs",
  );
  assert.ok((await fetchBlob(registry.url, oci.repo, oci.configDigest)).equals(oci.config.bytes));

  for (const image of [oci, docker]) {
    await assertManifestRoundTrip(image.repo, image.tag, image.manifest);
    const ns = `busybox-${image.format}`;
    const ref = imageRef(registry.host, image);
    assert.deepEqual(await pull(ns, ref), [image.chainId]);
    assert.equal(image.chainId, directChainId(image.diffIds));
    assert.deepEqual(await imageTarget(ns, ref), {
      digest: image.manifestDigest,
      mediaType: image.manifest.descriptor.mediaType,
    });
    // Pull by digest too.
    assert.deepEqual(await pull(ns, digestRef(registry.host, image, image.manifestDigest)), [image.chainId]);
  }
});

void test("the registry refuses a wrong digest, an index before its children, and a wrong Content-Type", async () => {
  const { registry } = running();
  const blob = makeBlob(Buffer.from("not what the digest says"), "application/octet-stream");
  const lying = {
    bytes: blob.bytes,
    descriptor: { ...blob.descriptor, digest: sha256Digest(Buffer.from("x")) },
  };
  await assert.rejects(pushBlob(registry.url, "berth/refusals", lying), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.status, 400);
    assert.match(err.body, /DIGEST_INVALID/);
    return true;
  });
  const mp = await multiPlatformTestIndex({ repo: "berth/refusals" });
  await assert.rejects(
    pushManifest(registry.url, mp.repo, mp.tag, mp.index),
    /HTTP 400.*MANIFEST_BLOB_UNKNOWN/,
  );
  const image = await busyboxTestImage("oci", { repo: "berth/refusals" });
  await pushImage(registry.url, image.repo, image.tag, image);
  const mislabelled = {
    ...image.manifest,
    descriptor: { ...image.manifest.descriptor, mediaType: MediaTypes.dockerManifest },
  };
  await assert.rejects(
    pushManifest(registry.url, image.repo, "mislabelled", mislabelled),
    /HTTP 400.*MANIFEST_INVALID/,
  );
  // distribution 2.8 serves an OCI manifest only to clients that Accept its media type.
  await assert.rejects(
    fetchManifest(registry.url, image.repo, image.tag, MediaTypes.dockerManifest),
    /HTTP 404.*accept header does not support OCI manifests/,
  );
});

void test("multi-platform OCI index: default, --platform linux/arm64 and --all-platforms pulls", async () => {
  const { registry, containerd } = running();
  const mp = await multiPlatformTestIndex();
  const amd64 = mp.byPlatform["linux/amd64"];
  const arm64 = mp.byPlatform["linux/arm64"];
  assert.ok(amd64 && arm64);
  assert.notEqual(amd64.chainId, arm64.chainId);

  const pushed = await pushIndex(registry.url, mp.repo, mp.tag, mp);
  assert.equal(pushed.indexDigest, mp.indexDigest);
  await assertManifestRoundTrip(mp.repo, mp.tag, mp.index);
  for (const child of mp.manifests) {
    const got = await fetchManifest(registry.url, mp.repo, child.manifestDigest);
    assert.ok(got.bytes.equals(child.manifest.bytes));
  }
  const indexDoc = JSON.parse(mp.index.bytes.toString()) as {
    manifests: { digest: string; platform: unknown }[];
  };
  assert.deepEqual(
    indexDoc.manifests.map((m) => [m.digest, m.platform]),
    [
      [amd64.manifestDigest, { architecture: "amd64", os: "linux" }],
      [arm64.manifestDigest, { architecture: "arm64", os: "linux" }],
    ],
  );

  const ref = imageRef(registry.host, mp);
  assert.deepEqual(await pull("mp-default", ref), [amd64.chainId], "host platform is linux/amd64");
  assert.deepEqual(await pull("mp-arm64", ref, ["--platform", "linux/arm64"]), [arm64.chainId]);
  assert.deepEqual(await pull("mp-all", ref, ["--all-platforms"]), [amd64.chainId, arm64.chainId]);
  for (const ns of ["mp-default", "mp-arm64", "mp-all"]) {
    assert.deepEqual(await imageTarget(ns, ref), { digest: mp.indexDigest, mediaType: MediaTypes.ociIndex });
  }

  // The arm64-only pull fetched the arm64 manifest but none of amd64's.
  const content = await ctrOk(containerd.address, ["content", "ls", "-q"], { namespace: "mp-arm64" });
  assert.ok(content.includes(arm64.manifestDigest), content);
  assert.ok(!content.includes(amd64.manifestDigest), content);
  for (const image of [amd64, arm64]) {
    assert.equal(image.chainId, directChainId(image.diffIds));
    // amd64 is busybox plus the marker layer; arm64 is the marker layer alone.
    await assertTree("mp-all", ref, image.platformName, {
      present: {
        [ARCH_MARKER_PATH]: { type: "file", mode: 0o644, content: image.marker.content },
        ...(image === amd64 ? { "bin/busybox": { type: "file", mode: 0o755 } as const } : {}),
      },
      absent: image === arm64 ? ["bin"] : [],
    });
  }
});

void test("multi-layer image (whiteouts, opaque dir, links, modes, owners, xattr, fifo) with gzip and zstd", async () => {
  const { registry } = running();
  for (const compression of ["gzip", "zstd"] as const) {
    const image = await multiLayerTestImage(compression);
    const pushed = await pushImage(registry.url, image.repo, image.tag, image);
    assert.equal(pushed.manifestDigest, image.manifestDigest);
    await assertManifestRoundTrip(image.repo, image.tag, image.manifest);

    // One namespace per flavour: both share chain IDs, and a shared namespace would skip the unpack.
    const ns = `layers-${compression}`;
    assert.deepEqual(await pull(ns, imageRef(registry.host, image)), [image.chainId]);
    assert.equal(image.chainId, directChainId(image.diffIds));
    await assertTree(ns, imageRef(registry.host, image), "linux/amd64", image.expected);
  }
});

void test("large image (8 MiB variant): streamed layer file, pushed from disk, pulled and unpacked", async () => {
  const { registry, work } = running();
  const dir = join(work, "large");
  await mkdir(dir);
  const image = await largeTestImage({ dir, size: 8 * MiB });
  const layer = image.layerBlobs[0];
  assert.ok(image.tarSize > 8 * MiB);
  assert.ok(layer.descriptor.size < image.tarSize / 2, "text content compresses");
  // The file's digests, recomputed from disk.
  const gz = createHash("sha256");
  const tar = createHash("sha256");
  await pipeline(
    createReadStream(layer.path),
    async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        gz.update(c);
        yield c;
      }
    },
    createGunzip(),
    async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) tar.update(c);
    },
  );
  assert.equal(`sha256:${gz.digest("hex")}`, layer.descriptor.digest);
  assert.equal(`sha256:${tar.digest("hex")}`, image.diffIds[0]);

  const pushed = await pushImage(registry.url, image.repo, image.tag, image);
  assert.equal(pushed.manifestDigest, image.manifestDigest);
  await assertManifestRoundTrip(image.repo, image.tag, image.manifest);
  assert.deepEqual(await pull("large", imageRef(registry.host, image)), [image.chainId]);

  await withMountedImage("large", imageRef(registry.host, image), "linux/amd64", async (root) => {
    for (const f of image.bigFiles) {
      const h = createHash("sha256");
      for await (const c of createReadStream(join(root, f.path))) h.update(c as Buffer);
      assert.equal(`sha256:${h.digest("hex")}`, f.digest, f.path);
    }
    let small = 0;
    for (const d of await readdir(join(root, "data/small")))
      small += (await readdir(join(root, "data/small", d))).length;
    assert.equal(small, image.smallFileCount);
  });
});

// Opt-in (slow): BERTH_LARGE_IMAGE_BYTES=1073741824 runs the full-size layer end to end.
const largeBytes = Number(process.env.BERTH_LARGE_IMAGE_BYTES ?? 0);

void test(
  "large image at full size: generated, pushed from disk without buffering, pulled",
  { skip: largeBytes > 0 ? false : "set BERTH_LARGE_IMAGE_BYTES (e.g. 1073741824) to run" },
  async (t) => {
    const { registry, work } = running();
    const dir = join(work, "large-full");
    await mkdir(dir);
    const image = await largeTestImage({ dir, size: largeBytes, repo: "berth/large-full" });
    t.diagnostic(
      `generated ${image.tarSize} tar bytes -> ${image.layerDescriptors[0]?.size} gzip bytes, ` +
        `${image.smallFileCount} small files, in ${image.generationMs} ms`,
    );
    // Peak Buffer memory while pushing: a buffered upload would hold the whole layer.
    const before = process.memoryUsage().arrayBuffers;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers)), 10);
    let started = Date.now();
    try {
      await pushImage(registry.url, image.repo, image.tag, image);
    } finally {
      clearInterval(sampler);
    }
    const pushMs = Date.now() - started;
    const growth = peak - before;
    assert.ok(growth < 128 * MiB, `push held ${growth} bytes of buffers at once: the layer was buffered`);
    started = Date.now();
    assert.deepEqual(await pull("large-full", imageRef(registry.host, image)), [image.chainId]);
    t.diagnostic(
      `push ${pushMs} ms (peak buffers +${Math.round(growth / MiB)} MiB), pull+unpack ${Date.now() - started} ms`,
    );
  },
);
