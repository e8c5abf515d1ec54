// Stock ctr `images` commands against berthd and a private containerd 1.6: import (OCI and
// docker-save), ls and filters, check, tag, label, rm and export must print the same.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { extract } from "tar-stream";
import { Images } from "../../src/client/index.js";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeDockerArchive } from "../fixtures/docker-archive.js";
import { MediaTypes } from "../fixtures/media-types.js";
import { writeOciArchive, type ArchiveResult } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { ctrOk, runCtr } from "../harness/ctr.js";
import { normalizeCtrOutput } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { sideBySide, type Both, type Daemon } from "./side-by-side.js";

const OCI_NAME = "docker.io/library/busybox:oci";
const DOCKER_NAME = "docker.io/library/busybox:docker";

/** Reads a tar into memory: member path -> bytes (directories left out). */
async function readTar(path: string): Promise<Map<string, Buffer>> {
  const members = new Map<string, Buffer>();
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        if (header.type === "file") members.set(header.name, Buffer.concat(chunks));
        next();
      });
      stream.on("error", reject);
    });
    ex.on("finish", resolve);
    ex.on("error", reject);
  });
  ex.end(await readFile(path));
  await done;
  return members;
}

const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

void describe("ctr images: berthd vs containerd", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  let oci: ArchiveResult;
  let docker: ArchiveResult;
  let nsCounter = 0;
  const newNamespace = (): string => `img-${++nsCounter}`;

  const { both, same, api } = sideBySide(() => ({ berthd, containerd }));

  /** Imports an archive on both daemons (exit 0 required on containerd, equal output on both). */
  async function importBoth(archive: string, namespace: string): Promise<void> {
    await ctrOk(containerd.address, ["images", "import", "--no-unpack", archive], { namespace });
    const b = await runCtr(berthd.address, ["images", "import", "--no-unpack", archive], { namespace });
    assert.equal(b.code, 0, `berthd import of ${archive} failed: ${b.stderr}`);
  }

  /** Runs fn with an archive path per daemon, each in a temp dir of its own (removed after). */
  async function withArchivePaths(fn: (pathFor: (d: Daemon) => string) => Promise<void>): Promise<void> {
    const dirs = { berthd: await makeTempDir("export"), containerd: await makeTempDir("export") };
    try {
      await fn((d) => join(dirs[d], "out.tar"));
    } finally {
      await removeTempDir(dirs.berthd);
      await removeTempDir(dirs.containerd);
    }
  }

  /** Both daemons' archives, read; asserts that they hold the same member names. */
  async function readArchives(pathFor: (d: Daemon) => string): Promise<Both<Map<string, Buffer>>> {
    const tars = {
      berthd: await readTar(pathFor("berthd")),
      containerd: await readTar(pathFor("containerd")),
    };
    assert.deepEqual([...tars.berthd.keys()].sort(), [...tars.containerd.keys()].sort());
    return tars;
  }

  void before(async () => {
    work = await makeTempDir("compat-images");
    const image = await busyboxImage();
    oci = await writeOciArchive(join(work, "oci.tar"), { image, name: "busybox:oci" });
    docker = await writeDockerArchive(join(work, "docker.tar"), { image, name: "busybox:docker" });
    // One after the other, so that after() can stop whichever started if the other fails.
    berthd = await startBerthd();
    containerd = await startContainerd();
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  // The archive, the name and media type ctr lists, and the size it shows, per archive format.
  const formats = [
    ["an OCI", () => oci, OCI_NAME, MediaTypes.ociManifest, "1.0 MiB"],
    ["a docker-save", () => docker, DOCKER_NAME, MediaTypes.dockerManifest, "1.9 MiB"],
  ] as const;
  for (const [format, archive, name, mediaType, size] of formats) {
    void test(`import --no-unpack of ${format} archive, then images ls`, async () => {
      const ns = newNamespace();
      const { path, manifestDigest, image } = archive();
      const imported = await same(["images", "import", "--no-unpack", path], ns);
      assert.equal(imported.code, 0);
      const ls = await same(["images", "ls"], ns);
      assert.equal(
        normalizeCtrOutput(ls.stdout),
        [
          "REF TYPE DIGEST SIZE PLATFORMS LABELS",
          `${name} ${mediaType} ${manifestDigest} ${size} linux/amd64 -`,
          "",
        ].join("\n"),
      );
      // The manifest is stored as built (a docker-save one is synthesised by the importer, which
      // writes it with its expected digest).
      const manifest = await ctrOk(berthd.address, ["content", "get", manifestDigest], { namespace: ns });
      assert.equal(manifest, image.manifest.bytes.toString());
    });
  }

  void test("import --index-name also records the index, as containerd does", async () => {
    const ns = newNamespace();
    const r = await same(
      ["images", "import", "--no-unpack", "--index-name", "example.com/idx:1", oci.path],
      ns,
    );
    assert.equal(r.code, 0);
    const ls = await same(["images", "ls"], ns);
    assert.match(
      normalizeCtrOutput(ls.stdout),
      /^example\.com\/idx:1 application\/vnd\.oci\.image\.index\.v1\+json /m,
    );
  });

  void test("image records are field-for-field the same through the raw API", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await importBoth(docker.path, ns);
    await same(["images", "label", OCI_NAME, "k=v"], ns);
    const { berthd: b, containerd: c } = await api(ns, (client) => client.service(Images).list({}));
    const strip = (r: typeof b) =>
      r.images.map((i) => ({
        name: i.name,
        labels: i.labels,
        target: { ...i.target, $typeName: undefined },
        hasTimes: i.createdAt !== undefined && i.updatedAt !== undefined,
      }));
    assert.deepEqual(strip(b), strip(c));
    assert.equal(b.images.length, 2);
  });

  void test("images ls -q and filters", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await same(["images", "tag", OCI_NAME, "example.com/other:2"], ns);
    await same(["images", "label", "example.com/other:2", "team=blue"], ns);

    const q = await same(["images", "ls", "-q"], ns);
    assert.equal(q.stdout, `${OCI_NAME}\nexample.com/other:2\n`);
    const byName = await same(["images", "ls", "-q", `name==${OCI_NAME}`], ns);
    assert.equal(byName.stdout, `${OCI_NAME}\n`);
    const byRegexp = await same(["images", "ls", "-q", "name~=^example\\.com/"], ns);
    assert.equal(byRegexp.stdout, "example.com/other:2\n");
    const byLabel = await same(["images", "ls", "-q", "labels.team==blue"], ns);
    assert.equal(byLabel.stdout, "example.com/other:2\n");
    const byDigest = await same(["images", "ls", "-q", `target.digest==${oci.manifestDigest}`], ns);
    assert.equal(byDigest.stdout, `${OCI_NAME}\nexample.com/other:2\n`);
    const either = await same(["images", "ls", "-q", "labels.team==red", `name==${OCI_NAME}`], ns);
    assert.equal(either.stdout, `${OCI_NAME}\n`);
    const none = await same(["images", "ls", "name==nothing"], ns);
    assert.equal(normalizeCtrOutput(none.stdout), "REF TYPE DIGEST SIZE PLATFORMS LABELS\n");
  });

  void test("images ls with a malformed filter fails with containerd's text", async () => {
    const ns = newNamespace();
    const r = await same(["images", "ls", "bad=="], ns);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: failed to list images: filters: parse error: [bad==]: expected value or quoted: " +
        "invalid argument: invalid argument\n",
    );
  });

  void test("images check lists both imports as complete (2/2)", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await importBoth(docker.path, ns);
    const r = await both(["images", "check"], ns);
    // The table rows: the content check, done through the content and images services.
    assert.equal(normalizeCtrOutput(r.berthd.stdout), normalizeCtrOutput(r.containerd.stdout));
    const rows = normalizeCtrOutput(r.berthd.stdout).split("\n").slice(1).filter(Boolean);
    assert.deepEqual(rows, [
      `${DOCKER_NAME} ${MediaTypes.dockerManifest} ${docker.manifestDigest} complete (2/2) 1.9 MiB/1.9 MiB false`,
      `${OCI_NAME} ${MediaTypes.ociManifest} ${oci.manifestDigest} complete (2/2) 1.0 MiB/1.0 MiB false`,
    ]);
  });

  void test("images check succeeds as on containerd (UNPACKED needs Snapshots.Stat)", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    const r = await same(["images", "check"], ns);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
  });

  void test("images check with no matching image prints nothing", async () => {
    const ns = newNamespace();
    const r = await same(["images", "check", "name==nothing"], ns);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, "");
  });

  void test("images tag: new tag, existing tag, --force over an existing tag", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await importBoth(docker.path, ns);

    const tagged = await same(["images", "tag", OCI_NAME, "example.com/t:1"], ns);
    assert.equal(tagged.stdout, "example.com/t:1\n");
    const dup = await same(["images", "tag", DOCKER_NAME, "example.com/t:1"], ns);
    assert.equal(dup.code, 1);
    assert.equal(dup.stderr, 'ctr: image "example.com/t:1": already exists\n');
    const forced = await same(["images", "tag", "--force", DOCKER_NAME, "example.com/t:1"], ns);
    assert.equal(forced.stdout, "example.com/t:1\n");
    const missing = await same(["images", "tag", "example.com/none:1", "example.com/t:2"], ns);
    assert.equal(missing.code, 1);

    const ls = await same(["images", "ls"], ns);
    assert.match(
      normalizeCtrOutput(ls.stdout),
      new RegExp(
        `^example\\.com/t:1 ${MediaTypes.dockerManifest.replace(/[.+]/g, "\\$&")} ${docker.manifestDigest} `,
        "m",
      ),
    );
    // Several new names at once.
    const multi = await same(["images", "tag", OCI_NAME, "example.com/a:1", "example.com/b:1"], ns);
    assert.equal(multi.stdout, "example.com/a:1\nexample.com/b:1\n");
  });

  void test("images label: set, replace and clear", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);

    const set = await same(["images", "label", OCI_NAME, "foo=bar", "a=b"], ns);
    assert.equal(normalizeCtrOutput(set.stdout), "a=b,foo=bar\n");
    const ls = await same(["images", "ls"], ns);
    assert.match(normalizeCtrOutput(ls.stdout), / a=b,foo=bar\n$/);
    const replaced = await same(["images", "label", OCI_NAME, "foo=baz"], ns);
    assert.equal(normalizeCtrOutput(replaced.stdout), "a=b,foo=baz\n");
    const cleared = await same(["images", "label", OCI_NAME, "foo="], ns);
    assert.equal(cleared.stdout, "a=b\n");
    await same(["images", "label", OCI_NAME, "a="], ns);
    const lsAfter = await same(["images", "ls"], ns);
    assert.match(normalizeCtrOutput(lsAfter.stdout), / linux\/amd64 -\n$/);
    const missing = await same(["images", "label", "example.com/none:1", "a=b"], ns);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'ctr: image "example.com/none:1": not found\n');
  });

  void test("images label: an oversized label fails with containerd's text", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    const invalid = await same(["images", "label", OCI_NAME, `${"k".repeat(4097)}=v`], ns);
    assert.equal(invalid.code, 1);
    assert.equal(
      invalid.stderr,
      "ctr: image.Labels: label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk: " +
        "invalid argument\n",
    );
  });

  void test("images label: an empty key fails in the write, as containerd's bolt store does", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    const r = await same(["images", "label", OCI_NAME, "=v"], ns);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `ctr: writing labels for image ${OCI_NAME}: failed to set label ""="v": key required: unknown\n`,
    );
  });

  void test("images rm: existing, missing, several", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await same(["images", "tag", OCI_NAME, "example.com/t:1", "example.com/t:2"], ns);

    const rm = await same(["images", "rm", "example.com/t:1"], ns);
    assert.equal(rm.stdout, "example.com/t:1\n");
    const again = await same(["images", "rm", "example.com/t:1"], ns);
    assert.equal(again.code, 0);
    assert.equal(
      normalizeCtrOutput(again.stderr),
      'time="<TIME>" level=warning msg="example.com/t:1: image not found"\n',
    );
    const several = await same(["images", "rm", "example.com/none:1", "example.com/t:2", OCI_NAME], ns);
    assert.equal(several.stdout, `example.com/t:2\n${OCI_NAME}\n`);
    const ls = await same(["images", "ls", "-q"], ns);
    assert.equal(ls.stdout, "");
  });

  void test("images export: same archive from both daemons, and it imports again", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await withArchivePaths(async (out) => {
      const exported = await same((d) => ["images", "export", out(d), OCI_NAME], ns);
      assert.equal(exported.code, 0);
      const { berthd: tarB, containerd: tarC } = await readArchives(out);
      for (const [name, bytes] of tarC) {
        assert.equal(tarB.get(name)?.toString("base64"), bytes.toString("base64"), `${name} differs`);
      }

      // The archive names the imported manifest and carries exactly the image's blobs.
      const index = JSON.parse(tarB.get("index.json")?.toString() ?? "{}") as {
        manifests: { digest: string; annotations: Record<string, string> }[];
      };
      assert.deepEqual(
        index.manifests.map((m) => [m.digest, m.annotations["io.containerd.image.name"]]),
        [[oci.manifestDigest, OCI_NAME]],
      );
      const blobs = [...tarB.keys()].filter((k) => k.startsWith("blobs/")).sort();
      const expected = [oci.manifestDigest, oci.configDigest, ...oci.layerDigests]
        .map((d) => `blobs/sha256/${d.slice("sha256:".length)}`)
        .sort();
      assert.deepEqual(blobs, expected);
      for (const name of blobs) {
        assert.equal(
          sha256(tarB.get(name) ?? Buffer.alloc(0)),
          `sha256:${name.slice("blobs/sha256/".length)}`,
        );
      }

      // Re-import into a fresh namespace on each daemon.
      const ns2 = newNamespace();
      const reimported = await same((d) => ["images", "import", "--no-unpack", out(d)], ns2);
      assert.equal(reimported.code, 0);
      const ls = await same(["images", "ls", "-q"], ns2);
      assert.equal(ls.stdout, `${OCI_NAME}\n`);
      const check = await both(["images", "check"], ns2);
      assert.equal(normalizeCtrOutput(check.berthd.stdout), normalizeCtrOutput(check.containerd.stdout));
      assert.match(check.berthd.stdout, /complete \(2\/2\)/);
    });
  });

  void test("images export of an OCI and a docker image into one archive", async () => {
    const ns = newNamespace();
    await importBoth(oci.path, ns);
    await importBoth(docker.path, ns);
    await withArchivePaths(async (out) => {
      const exported = await same((d) => ["images", "export", out(d), OCI_NAME, DOCKER_NAME], ns);
      assert.equal(exported.code, 0);
      const { berthd: tarB, containerd: tarC } = await readArchives(out);
      for (const [name, bytes] of tarC) {
        // containerd writes manifest.json's entries in Go map order: compare them as a set.
        if (name === "manifest.json") continue;
        assert.equal(tarB.get(name)?.toString("base64"), bytes.toString("base64"), `${name} differs`);
      }
      const entries = (tar: Map<string, Buffer>): string[] =>
        (JSON.parse(tar.get("manifest.json")?.toString() ?? "[]") as unknown[])
          .map((e) => JSON.stringify(e))
          .sort();
      assert.deepEqual(entries(tarB), entries(tarC));
      // The docker-compatible manifest.json names both tags.
      const manifestJson = JSON.parse(tarB.get("manifest.json")?.toString() ?? "[]") as {
        RepoTags: string[];
      }[];
      assert.deepEqual(
        manifestJson
          .map((m) => m.RepoTags)
          .flat()
          .sort(),
        [DOCKER_NAME, OCI_NAME].map((n) => n.replace("docker.io/library/", "")).sort(),
      );
    });
  });

  void test("images export of a missing image fails alike", async () => {
    const ns = newNamespace();
    await withArchivePaths(async (out) => {
      const r = await same((d) => ["images", "export", out(d), "example.com/none:1"], ns);
      assert.equal(r.code, 1);
    });
  });
});
