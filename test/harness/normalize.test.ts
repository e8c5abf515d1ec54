// Tests for the ctr output normalisers, on text copied from real ctr 1.6 runs.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  collapseSpaces,
  normalizeAges,
  normalizeCtrOutput,
  normalizePids,
  normalizeRandomIds,
  normalizeTempPaths,
  normalizeTimestamps,
  normalizeUuids,
  sortLabelLists,
  sortRows,
} from "./normalize.js";

void test("timestamps: RFC3339, RFC3339Nano, offsets and Go's time.String()", () => {
  assert.equal(
    normalizeTimestamps(
      "a 2026-11-22T14:04:01Z b 2026-11-22T14:04:01.931388194Z c 2024-01-01T00:00:00+02:00",
    ),
    "a <TIME> b <TIME> c <TIME>",
  );
  assert.equal(
    normalizeTimestamps("2026-11-22 14:04:12.595611 +0000 UTC t2 /tasks/start {}"),
    "<TIME> t2 /tasks/start {}",
  );
  assert.equal(
    normalizeTimestamps('time="2026-11-22T14:04:11Z" level=warning'),
    'time="<TIME>" level=warning',
  );
});

void test("ages: go-units HumanDuration forms", () => {
  for (const age of [
    "Less than a second",
    "1 second",
    "11 seconds",
    "About a minute",
    "5 minutes",
    "About an hour",
  ]) {
    assert.equal(normalizeAges(`x\t${age}\ty`), "x\t<AGE>\ty");
  }
  assert.equal(normalizeAges("3 days ago"), "<AGE>");
  assert.equal(normalizeAges("12B"), "12B");
});

void test("UUIDs", () => {
  assert.equal(normalizeUuids("  UUID: 3d65dccd-0696-4112-84e3-7205e6db6b59\n"), "  UUID: <UUID>\n");
});

void test("random lease ids and unpack keys, but not dates or digests", () => {
  assert.equal(normalizeRandomIds("810662575-Iabp 2026"), "<ID> 2026");
  assert.equal(
    normalizeRandomIds('{"key":"extract-384731244-JyjY sha256:b9"}'),
    '{"key":"extract-<ID> sha256:b9"}',
  );
  assert.equal(normalizeRandomIds("12-a_-Z"), "<ID>");
  assert.equal(normalizeRandomIds("mylease"), "mylease");
  const afterTime = normalizeRandomIds(normalizeTimestamps("2026-11-22T14:04:01Z"));
  assert.equal(afterTime, "<TIME>");
  const digest = "sha256:66b9d21729299448527d2f2cd7b6a6b977f94616dcbde19e4b699606464f5a1e";
  assert.equal(normalizeRandomIds(digest), digest);
});

void test("temp paths of harness dirs", () => {
  assert.equal(
    normalizeTempPaths('"root":{"path":"/tmp/berth-test-containerd-QNiONy/rootfs"}'),
    '"root":{"path":"<TMP>/rootfs"}',
  );
});

void test("pids in events and tasks ls", () => {
  assert.equal(normalizePids('{"container_id":"r1","pid":9905}'), '{"container_id":"r1","pid":<PID>}');
  assert.equal(
    normalizePids("TASK    PID     STATUS    \nc2      9988    RUNNING"),
    "TASK  PID  STATUS  \nc2  <PID>  RUNNING",
  );
  // A pid one digit longer widens the table: the same table once normalized.
  assert.equal(
    normalizePids("TASK    PID      STATUS    \nc2      10002    RUNNING"),
    normalizePids("TASK    PID     STATUS    \nc2      9988    RUNNING"),
  );
});

void test("label lists are sorted, single labels and other text untouched", () => {
  const a =
    "sha256:66b9\t422B\tcontainerd.io/gc.ref.content.l.0=sha256:b961,containerd.io/gc.ref.content.config=sha256:dd03";
  const b =
    "sha256:66b9\t422B\tcontainerd.io/gc.ref.content.config=sha256:dd03,containerd.io/gc.ref.content.l.0=sha256:b961";
  assert.equal(sortLabelLists(a), b);
  assert.equal(sortLabelLists(b), b);
  assert.equal(sortLabelLists("x    a=b    "), "x    a=b    ");
  assert.equal(sortLabelLists("mylease z=1,k=v,a=2 "), "mylease a=2,k=v,z=1 ");
});

void test("tabwriter spacing collapses to single spaces", () => {
  assert.equal(
    collapseSpaces("DIGEST\t\t\t\tSIZE\tAGE\t\t\tLABELS\nREF    TYPE  \n"),
    "DIGEST SIZE AGE LABELS\nREF TYPE\n",
  );
});

void test("sortRows keeps the header first", () => {
  assert.equal(sortRows("NAME LABELS\nx\nt1\n"), "NAME LABELS\nt1\nx\n");
  assert.equal(sortRows("b\na\n", { header: false }), "a\nb\n");
});

void test("the same listing from two daemons normalises to the same text", () => {
  // `leases ls` as containerd printed it, and as a daemon with other ids/times/widths would.
  const containerd =
    "ID             CREATED AT           LABELS                                           \n" +
    "810662575-Iabp 2026-11-22T14:04:01Z containerd.io/gc.expire=2026-11-23T14:04:01Z     \n" +
    "mylease        2026-11-22T14:04:01Z k=v,containerd.io/gc.expire=2026-11-22T15:04:01Z \n";
  const other =
    "ID           CREATED AT           LABELS                                           \n" +
    "12345-ab_c   2027-01-02T03:04:05Z containerd.io/gc.expire=2027-01-03T03:04:05Z \n" +
    "mylease      2027-01-02T03:04:05Z containerd.io/gc.expire=2027-01-02T04:04:05Z,k=v \n";
  assert.equal(normalizeCtrOutput(containerd), normalizeCtrOutput(other));
  assert.equal(
    normalizeCtrOutput(containerd),
    "ID CREATED AT LABELS\n<ID> <TIME> containerd.io/gc.expire=<TIME>\nmylease <TIME> containerd.io/gc.expire=<TIME>,k=v\n",
  );
});
