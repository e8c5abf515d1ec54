// Stock ctr `leases` commands against berthd and a private containerd 1.6: create (--id, -x,
// labels, a random id when none is given), duplicate ids, ls (-q, filters, bad filters) and rm
// (--sync, missing). Outputs must match once times and random ids are normalised.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { ctrOk } from "../harness/ctr.js";
import { normalizeCtrOutput, sortRows } from "../harness/normalize.js";
import { sideBySide } from "./side-by-side.js";

/** containerd's leases.WithRandomID: nanoseconds of the clock, "-", 4 base64url characters. */
const RANDOM_ID = /^\d{1,9}-[A-Za-z0-9_-]{4}$/;

void describe("ctr leases: berthd vs containerd", () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let counter = 0;
  const newNamespace = (): string => `leases-${++counter}`;

  const { both, same } = sideBySide(() => ({ berthd, containerd }));

  void before(async () => {
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
  });

  void test("create --id -x 1h with labels, then ls shows the labels and the expiry", async () => {
    const ns = newNamespace();
    const r = await same(["leases", "create", "--id", "mylease", "-x", "1h", "k=v", "a=b", "flag"], {
      namespace: ns,
    });
    assert.equal(r.stdout, "mylease\n");
    const ls = await same(["leases", "ls"], { namespace: ns });
    assert.equal(
      normalizeCtrOutput(ls.stdout),
      // A label with an empty value ("flag") is not stored.
      "ID CREATED AT LABELS\nmylease <TIME> a=b,containerd.io/gc.expire=<TIME>,k=v\n",
    );
    // The expiry is an hour after creation (RFC3339, second precision).
    const row = ls.stdout.split("\n")[1] ?? "";
    const created = Date.parse(row.split(/\s+/)[1] ?? "");
    const expire = Date.parse(/containerd\.io\/gc\.expire=(\S+?)(?:,|\s|$)/.exec(row)?.[1] ?? "");
    assert.ok(Math.abs(expire - created - 3600_000) <= 2000, row);
  });

  void test("create without --id gets a random id; the default expiry is 24h; -x 0 never expires", async () => {
    const ns = newNamespace();
    const { berthd: b, containerd: c } = await both(["leases", "create"], ns);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(c.code, 0, c.stderr);
    assert.match(b.stdout.trim(), RANDOM_ID);
    assert.match(c.stdout.trim(), RANDOM_ID);
    await same(["leases", "create", "-x", "0", "k=2"], { namespace: ns });
    await same(["leases", "create", "--id", "forever", "-x", "0"], { namespace: ns });
    const ls = await same(["leases", "ls"], { namespace: ns, sortRows: true });
    assert.equal(
      sortRows(normalizeCtrOutput(ls.stdout)),
      "ID CREATED AT LABELS\n" +
        "<ID> <TIME> containerd.io/gc.expire=<TIME>\n" +
        "<ID> <TIME> k=2\n" +
        "forever <TIME> -\n",
    );
    const row = ls.stdout.split("\n").find((l) => l.startsWith(b.stdout.trim())) ?? "";
    const created = Date.parse(row.split(/\s+/)[1] ?? "");
    const expire = Date.parse(/containerd\.io\/gc\.expire=(\S+)/.exec(row)?.[1] ?? "");
    assert.ok(Math.abs(expire - created - 24 * 3600_000) <= 2000, row);
    // Two random ids differ.
    const again = (await ctrOk(berthd.address, ["leases", "create"], { namespace: ns })).trim();
    assert.notEqual(again, b.stdout.trim());
  });

  void test("a duplicate id fails with already exists", async () => {
    const ns = newNamespace();
    await same(["leases", "create", "--id", "dup"], { namespace: ns });
    const r = await same(["leases", "create", "--id", "dup", "x=y"], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'ctr: lease "dup": already exists\n');
    // The same id in another namespace is another lease.
    assert.equal((await same(["leases", "create", "--id", "dup"], { namespace: `${ns}-other` })).code, 0);
    // containerd does not validate lease ids or label keys here; neither does berthd refuse them.
    await same(["leases", "create", "--id", "odd/id with space"], { namespace: ns });
    await same(["leases", "create", "--id", "biglabel", `k=${"v".repeat(5000)}`], { namespace: ns });
    await same(["leases", "ls", "-q"], { namespace: ns });
  });

  void test("an empty label key fails as containerd's database write does", async () => {
    const ns = newNamespace();
    const r = await same(["leases", "create", "--id", "emptykey", "=v"], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'ctr: failed to set label ""="v": key required: unknown\n');
    assert.equal((await same(["leases", "ls", "-q"], { namespace: ns })).stdout, "");
  });

  void test("ls -q and filters on id and labels", async () => {
    const ns = newNamespace();
    await same(["leases", "create", "--id", "l1", "-x", "0", "k=v", "tier=gold"], { namespace: ns });
    await same(["leases", "create", "--id", "l2", "-x", "0", "k=2"], { namespace: ns });
    await same(["leases", "create", "--id", "l3", "-x", "0"], { namespace: ns });
    assert.equal((await same(["leases", "ls", "-q"], { namespace: ns })).stdout, "l1\nl2\nl3\n");
    const cases: [string[], string][] = [
      [["id==l2"], "l2\n"],
      [["id!=l2"], "l1\nl3\n"],
      [['id~="^l[13]$"'], "l1\nl3\n"],
      [["labels.k==v"], "l1\n"],
      [['labels."k"==2'], "l2\n"],
      [["labels.tier"], "l1\n"],
      [["labels.k!=v"], "l2\nl3\n"],
      [["id==l1", "id==l3"], "l1\nl3\n"],
      [["id==l1,labels.k==v"], "l1\n"],
      [["id==l1,labels.k==2"], ""],
      [["id==nope"], ""],
    ];
    for (const [filters, want] of cases) {
      const r = await same(["leases", "ls", "-q", ...filters], { namespace: ns });
      assert.equal(r.stdout, want, filters.join(" "));
      await same(["leases", "ls", ...filters], { namespace: ns });
    }
  });

  void test("ls with a bad filter fails as containerd's does", async () => {
    const ns = newNamespace();
    await same(["leases", "create", "--id", "x"], { namespace: ns });
    const r = await same(["leases", "ls", "id=="], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: failed to list leases: filters: parse error: [id==]: expected value or quoted: invalid argument: invalid argument\n",
    );
    for (const filter of ["labels.k==", "==x", 'id=="open', "id=~x"])
      await same(["leases", "ls", filter], { namespace: ns });
  });

  void test("rm, rm --sync, rm of a missing lease, and rm of several stopping at the first error", async () => {
    const ns = newNamespace();
    for (const id of ["r1", "r2", "r3", "r4"])
      await same(["leases", "create", "--id", id], { namespace: ns });
    assert.equal((await same(["leases", "rm", "r1"], { namespace: ns })).stdout, "r1\n");
    assert.equal((await same(["leases", "rm", "--sync", "r2"], { namespace: ns })).stdout, "r2\n");
    const missing = await same(["leases", "rm", "r1"], { namespace: ns });
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'ctr: lease "r1": not found\n');
    const several = await same(["leases", "rm", "r3", "nope", "r4"], { namespace: ns });
    assert.equal(several.code, 1);
    assert.equal(several.stdout, "r3\n");
    assert.equal((await same(["leases", "ls", "-q"], { namespace: ns })).stdout, "r4\n");
    // A lease of another namespace is not visible here.
    await same(["leases", "rm", "r4"], { namespace: `${ns}-other` });
    await same(["leases", "ls"], { namespace: `${ns}-empty` });
  });
});
