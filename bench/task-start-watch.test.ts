import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTaskStart } from "./task-start-watch.js";

void test("parseTaskStart reads the namespace and container of ctr's /tasks/start lines only", () => {
  assert.deepEqual(
    parseTaskStart(
      '2026-12-05 06:19:05.709 +0000 UTC bench-containers-1 /tasks/start {"container_id":"c1-0","pid":2898}',
    ),
    { namespace: "bench-containers-1", id: "c1-0" },
  );
  assert.equal(
    parseTaskStart('2026-12-05 06:19:05.709 +0000 UTC demo /tasks/create {"container_id":"c1-0","pid":1}'),
    undefined,
  );
  assert.equal(parseTaskStart("2026-12-05 06:19:05.709 +0000 UTC demo /tasks/start {not json}"), undefined);
  assert.equal(parseTaskStart('2026-12-05 06:19:05.709 +0000 UTC demo /tasks/start {"pid":1}'), undefined);
});
