// Checks the plan of the Diff.Apply layer (run: node --import tsx --test bench/apply-layer.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { MAX_SMALL_FILE, MiB, SMALL_FILES_PER_DIR, buildApplyLayer, planApplyLayer } from "./apply-layer.js";

void test("the plan adds up to the size asked for, a quarter of each kind", () => {
  for (const total of [4096, 1 * MiB + 3, 64 * MiB]) {
    const plan = planApplyLayer(total);
    const sizes = plan.entries.flatMap((e) => (e.type === "file" ? [e.size] : []));
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      total,
    );
    assert.equal(plan.contentBytes, total);
    assert.equal(plan.files, sizes.length);
    const { text, binary, random } = plan.bytesByKind;
    assert.equal(text + binary + random, total);
    assert.equal(binary, Math.floor(total / 4));
    assert.equal(random, Math.floor(total / 4));
  }
});

void test("many small files, skewed small, at most 128 a directory, every parent before its children", () => {
  const plan = planApplyLayer(64 * MiB);
  const small = plan.entries.filter((e) => e.type === "file" && e.path.startsWith("usr/share/"));
  assert.equal(small.length, plan.smallFiles);
  assert.ok(plan.smallFiles > 3000, `${plan.smallFiles} small files`);
  const sizes = small.map((e) => (e.type === "file" ? e.size : -1)).sort((a, b) => a - b);
  assert.ok(sizes.every((s) => s >= 0 && s <= MAX_SMALL_FILE));
  assert.ok((sizes[sizes.length >> 1] ?? 0) < 4096, "median small file under 4 KiB");

  const seen = new Set<string>();
  const perDir = new Map<string, number>();
  for (const e of plan.entries) {
    const parent = e.path.includes("/") ? e.path.slice(0, e.path.lastIndexOf("/")) : "";
    if (parent !== "") assert.ok(seen.has(parent), `${e.path} before its directory`);
    assert.ok(!seen.has(e.path), `${e.path} twice`);
    seen.add(e.path);
    if (e.type === "file") perDir.set(parent, (perDir.get(parent) ?? 0) + 1);
    if (e.type === "symlink") assert.ok(seen.has(`${parent}/${e.linkname}`), `${e.path} dangles`);
  }
  assert.ok(Math.max(...perDir.values()) <= SMALL_FILES_PER_DIR);
  assert.ok(plan.entries.some((e) => e.type === "symlink"));
});

void test("the plan is deterministic, and the seed changes it", () => {
  assert.deepEqual(planApplyLayer(8 * MiB, 7), planApplyLayer(8 * MiB, 7));
  assert.notDeepEqual(planApplyLayer(8 * MiB, 7), planApplyLayer(8 * MiB, 8));
  assert.throws(() => planApplyLayer(100), RangeError);
});

void test("the built layer is the planned tar, with matching digests, and compresses about 2x", async () => {
  const layer = await buildApplyLayer(2 * MiB, 3);
  assert.equal(`sha256:${createHash("sha256").update(layer.gzip).digest("hex")}`, layer.digest);
  const tarBytes = gunzipSync(layer.gzip);
  assert.equal(tarBytes.length, layer.tarSize);
  assert.equal(`sha256:${createHash("sha256").update(tarBytes).digest("hex")}`, layer.diffId);
  const ratio = layer.tarSize / layer.gzip.length;
  assert.ok(ratio > 1.4 && ratio < 3, `compression ratio ${ratio}`);

  const names: string[] = [];
  const extract = tar.extract();
  extract.on("entry", (header, stream, next) => {
    names.push(header.name);
    stream.on("end", next);
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on("finish", resolve);
    extract.on("error", reject);
    extract.end(tarBytes);
  });
  const planned = layer.plan.entries.map((e) => (e.type === "dir" ? `${e.path}/` : e.path));
  assert.deepEqual(names, planned);
  assert.equal((await buildApplyLayer(2 * MiB, 3)).digest, layer.digest, "deterministic bytes");
});
