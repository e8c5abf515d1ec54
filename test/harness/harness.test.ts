// Self-test of the harness: the fixture archives import into a real containerd 1.6 through the
// stock ctr, with the digests the fixtures predicted; daemons start, fail and stop cleanly.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { access, chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeDockerArchive } from "../fixtures/docker-archive.js";
import { MediaTypes } from "../fixtures/media-types.js";
import { writeOciArchive, type ArchiveResult } from "../fixtures/oci-image.js";
import { BERTHD_PATH, startBerthd } from "./berthd.js";
import { startContainerd, type ContainerdHandle } from "./containerd.js";
import { ctrOk, runCtr, spawnCtr } from "./ctr.js";
import { normalizeCtrOutput } from "./normalize.js";
import { pidsWithArgs } from "./process-tree.js";
import { makeTempDir, removeTempDir } from "./temp-dir.js";

const NS = "harness";

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

void describe("fixtures imported into a real containerd", () => {
  let cd: ContainerdHandle;
  let work: string;
  let oci: ArchiveResult;
  let docker: ArchiveResult;

  void before(async () => {
    work = await makeTempDir("fixtures");
    const image = await busyboxImage();
    oci = await writeOciArchive(join(work, "oci.tar"), { image, name: "busybox:oci" });
    docker = await writeDockerArchive(join(work, "docker.tar"), { image, name: "busybox:docker" });
    cd = await startContainerd();
  });

  void after(async () => {
    await cd?.stop();
    await removeTempDir(work);
  });

  void test("both archives import with --no-unpack", async () => {
    await ctrOk(cd.address, ["images", "import", "--no-unpack", oci.path], { namespace: NS });
    await ctrOk(cd.address, ["images", "import", "--no-unpack", docker.path], { namespace: NS });
  });

  void test("images ls shows the predicted names, media types and manifest digests", async () => {
    const out = normalizeCtrOutput(await ctrOk(cd.address, ["images", "ls"], { namespace: NS }));
    assert.equal(
      out,
      [
        "REF TYPE DIGEST SIZE PLATFORMS LABELS",
        `docker.io/library/busybox:docker ${MediaTypes.dockerManifest} ${docker.manifestDigest} 1.9 MiB linux/amd64 -`,
        `docker.io/library/busybox:oci ${MediaTypes.ociManifest} ${oci.manifestDigest} 1.0 MiB linux/amd64 -`,
        "",
      ].join("\n"),
    );
    assert.deepEqual(docker.names, ["docker.io/library/busybox:docker"]);
  });

  void test("images check reports both complete", async () => {
    const out = normalizeCtrOutput(await ctrOk(cd.address, ["images", "check"], { namespace: NS }));
    const rows = out.split("\n").slice(1).filter(Boolean);
    assert.equal(rows.length, 2);
    for (const row of rows) assert.match(row, / complete \(2\/2\) .* false$/);
  });

  void test("content ls holds every predicted blob with containerd's gc labels", async () => {
    const out = normalizeCtrOutput(await ctrOk(cd.address, ["content", "ls"], { namespace: NS }));
    const rows = new Map(
      out
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((row) => [row.split(" ")[0], row] as const),
    );
    // The index blobs belong only to the import's lease; GC may already have removed them.
    const stable = [...oci.blobs, ...docker.blobs].filter((b) => b.mediaType !== MediaTypes.ociIndex);
    for (const blob of stable) assert.ok(rows.has(blob.digest), `missing ${blob.digest}\n${out}`);
    for (const digest of rows.keys()) {
      const known = [...oci.blobs, ...docker.blobs].some((b) => b.digest === digest);
      assert.ok(known, `unexpected blob ${digest}\n${out}`);
    }
    const layer = docker.layerDigests[0] ?? "";
    assert.equal(
      rows.get(docker.manifestDigest),
      `${docker.manifestDigest} 422B <AGE> containerd.io/gc.ref.content.config=${docker.configDigest},` +
        `containerd.io/gc.ref.content.l.0=${layer}`,
    );
    assert.equal(rows.get(oci.configDigest), `${oci.configDigest} 373B <AGE> -`);
  });

  void test("content get returns the fixture's bytes", async () => {
    const manifest = await ctrOk(cd.address, ["content", "get", oci.manifestDigest], { namespace: NS });
    assert.equal(manifest, oci.image.manifest.bytes.toString());
  });

  void test("ctr events sees an image create", async () => {
    const events = spawnCtr(cd.address, ["events"]);
    await new Promise((r) => setTimeout(r, 300)); // let the subscription reach the daemon
    await ctrOk(cd.address, ["images", "tag", "docker.io/library/busybox:oci", "example.com/tagged:1"], {
      namespace: NS,
    });
    await events.waitFor("/images/create");
    const { stdout } = await events.stop();
    assert.equal(normalizeCtrOutput(stdout), `<TIME> ${NS} /images/create {"name":"example.com/tagged:1"}\n`);
  });

  void test("content ingest reads stdin; runCtr reports failures without throwing", async () => {
    await ctrOk(cd.address, ["content", "ingest", "harness-ref"], { namespace: NS, input: "harness\n" });
    const digest = "sha256:b05ab1b4f2153fba0a75c1b6a8b5c1e1e0e48c6ef90b1c14e5d4f5e2d1c81a8c";
    const missing = await runCtr(cd.address, ["content", "get", digest], { namespace: NS });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not found/);
    await assert.rejects(ctrOk(cd.address, ["content", "get", digest], { namespace: NS }), /not found/);
  });

  void test("stop() ends the shims of running tasks and removes the temp dir", async () => {
    await ctrOk(cd.address, ["images", "import", oci.path], { namespace: NS });
    await ctrOk(
      cd.address,
      [
        "run",
        "-d",
        "--fifo-dir",
        cd.fifoDir,
        "docker.io/library/busybox:oci",
        "sleeper",
        "/bin/sleep",
        "600",
      ],
      { namespace: NS },
    );
    const shims = await pidsWithArgs("-address", cd.address);
    assert.equal(shims.length, 1);
    const dir = cd.dir;
    await cd.stop();
    assert.deepEqual(await pidsWithArgs("-address", cd.address), []);
    assert.equal(await exists(dir), false);
  });
});

void describe("berthd harness", () => {
  void test("a daemon that dies before it is ready fails with its log", async () => {
    const dir = await makeTempDir("fake-berthd");
    try {
      const fake = join(dir, "fake-berthd");
      await writeFile(fake, '#!/bin/sh\necho "boom: $*" >&2\nexit 3\n');
      await chmod(fake, 0o755);
      await assert.rejects(startBerthd({ binary: fake }), (err: Error) => {
        assert.match(err.message, /berthd exited before it was ready \(code 3\)/);
        assert.match(err.message, /boom: --root \S+ --state \S+ --address \S+berthd\.sock --log-level debug/);
        return true;
      });
    } finally {
      await removeTempDir(dir);
    }
  });

  void test("a daemon that never listens fails at the deadline", async () => {
    const dir = await makeTempDir("fake-berthd");
    try {
      const fake = join(dir, "fake-berthd");
      await writeFile(fake, "#!/bin/sh\necho waiting >&2\nexec sleep 30\n");
      await chmod(fake, 0o755);
      await assert.rejects(startBerthd({ binary: fake, readyTimeoutMs: 500 }), (err: Error) => {
        assert.match(
          err.message,
          /berthd not ready at \S+ after 500 ms \(socket not accepting connections\)/,
        );
        assert.match(err.message, /waiting/);
        return true;
      });
    } finally {
      await removeTempDir(dir);
    }
  });

  void test(
    "bin/berthd starts, answers ctr version, and stops",
    { skip: !existsSync(BERTHD_PATH) && "bin/berthd not built" },
    async () => {
      const berthd = await startBerthd();
      try {
        const version = await ctrOk(berthd.address, ["version"]);
        assert.match(version, /Server:/);
      } finally {
        const code = await berthd.stop();
        assert.equal(code, 0, berthd.logs());
      }
    },
  );
});
