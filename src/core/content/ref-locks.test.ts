// Tests for the ref locks: one holder per ref, release, and containerd's refusal text in Go's
// duration and time formats.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCode } from "../../errdefs/errors.js";
import { RefLocks, goDuration, goTime } from "./ref-locks.js";

void describe("ref locks", () => {
  void it("refuses a held ref with containerd's text until it is released", () => {
    const locks = new RefLocks<string>();
    const lock = locks.tryLock("ns/ref");
    lock.holder = "writer";
    assert.equal(locks.holder("ns/ref"), "writer");
    assert.throws(
      () => locks.tryLock("ns/ref"),
      (err: unknown) => {
        assert.ok(isCode(err, "unavailable"));
        assert.match(
          (err as Error).message,
          /^ref ns\/ref locked for \S+ \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \+0000 UTC m=\+\d+\.\d{9}\): unavailable$/,
        );
        return true;
      },
    );
    locks.tryLock("other");
    locks.release(lock);
    assert.equal(locks.holder("ns/ref"), undefined);
    const again = locks.tryLock("ns/ref");
    // Releasing a stale lock leaves the new holder alone.
    locks.release(lock);
    assert.throws(() => locks.tryLock("ns/ref"), { code: "unavailable" });
    locks.release(again);
  });

  void it("formats durations as Go's time.Duration.String", () => {
    const cases: [number, string][] = [
      [0, "0s"],
      [1, "1ns"],
      [999, "999ns"],
      [1500, "1.5µs"],
      [548_913_222, "548.913222ms"],
      [1e6, "1ms"],
      [1.5e9, "1.5s"],
      [120e9, "2m0s"],
      [3723.5e9, "1h2m3.5s"],
      [3600e9, "1h0m0s"],
    ];
    for (const [ns, text] of cases) assert.equal(goDuration(ns), text, String(ns));
  });

  void it("formats times as Go's time.Time.String in UTC", () => {
    const at = Date.UTC(2026, 10, 22, 15, 19, 10, 483);
    assert.equal(goTime(at), "2026-11-22 15:19:10.483 +0000 UTC");
    assert.equal(goTime(at + 0.5), "2026-11-22 15:19:10.4835 +0000 UTC");
    assert.equal(goTime(Date.UTC(2026, 0, 2, 3, 4, 5)), "2026-01-02 03:04:05 +0000 UTC");
  });
});
