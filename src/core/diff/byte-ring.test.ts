import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setImmediate as tick } from "node:timers/promises";
import { RingAborted, RingConsumer, RingFailed, RingProducer, createByteRing } from "./byte-ring.js";

const never = new Promise<never>(() => undefined);

async function drain(consumer: RingConsumer): Promise<Buffer> {
  const out: Buffer[] = [];
  for (;;) {
    const next = await consumer.next();
    if (next.done === true) return Buffer.concat(out);
    out.push(Buffer.from(next.value)); // a view: copied before the next call
  }
}

void test("bytes arrive whole and in order whatever the chunk sizes", async () => {
  const ring = createByteRing(3, 1000);
  const producer = new RingProducer(ring);
  const input = randomBytes(50_000);
  const received = drain(new RingConsumer(ring, never));
  for (let off = 0, n = 1; off < input.length; off += n, n = (n * 7 + 13) % 4096) {
    await producer.write(input.subarray(off, off + n));
  }
  producer.end();
  assert.deepEqual(await received, input);
});

void test("an empty stream ends without data", async () => {
  const ring = createByteRing(2, 16);
  const producer = new RingProducer(ring);
  producer.end();
  assert.deepEqual(await drain(new RingConsumer(ring, never)), Buffer.alloc(0));
});

void test("the producer waits while every slot is taken and goes on once one is released", async () => {
  const ring = createByteRing(2, 4);
  const producer = new RingProducer(ring);
  await producer.write(Buffer.from("aaaabbbb")); // fills both slots
  let written = false;
  const third = producer.write(Buffer.from("cccc")).then(() => (written = true));
  for (let i = 0; i < 20; i++) await tick();
  assert.equal(written, false, "a third slot was written while both were unread");
  const consumer = new RingConsumer(ring, never);
  const first = await consumer.next();
  assert.equal(first.done !== true && first.value.toString(), "aaaa");
  for (let i = 0; i < 20; i++) await tick();
  assert.equal(written, false, "the slot being read was reused before the next call");
  const second = await consumer.next(); // releases "aaaa"
  assert.equal(second.done !== true && second.value.toString(), "bbbb");
  await third;
  producer.end();
  const rest = await drain(consumer);
  assert.equal(rest.toString(), "cccc");
});

void test("a failed producer makes the consumer throw after the data it published", async () => {
  const ring = createByteRing(4, 4);
  const producer = new RingProducer(ring);
  await producer.write(Buffer.from("abcdef")); // "abcd" published, "ef" not yet
  producer.fail();
  const consumer = new RingConsumer(ring, never);
  const first = await consumer.next();
  assert.equal(first.done !== true && first.value.toString(), "abcd");
  await assert.rejects(consumer.next(), RingFailed);
});

void test("an abort wakes a waiting producer, whose writes then throw", async () => {
  const ring = createByteRing(2, 4);
  const producer = new RingProducer(ring);
  await producer.write(Buffer.from("aaaabbbb"));
  const pending = producer.write(Buffer.from("cccc"));
  new RingConsumer(ring, never).abort();
  await assert.rejects(pending, RingAborted);
  await assert.rejects(producer.write(Buffer.from("dddd")), RingAborted);
  assert.equal(producer.aborted, true);
});

void test("a consumer waiting for data stops when the producer's thread is gone", async () => {
  const ring = createByteRing(2, 4);
  let kill: (err: Error) => void = () => undefined;
  const stopped = new Promise<never>((_, reject) => (kill = reject));
  const consumer = new RingConsumer(ring, stopped);
  const next = consumer.next();
  kill(new Error("decoder exited"));
  await assert.rejects(next, /decoder exited/);
});

void test("bad geometry is refused", () => {
  assert.throws(() => createByteRing(1, 1024), RangeError);
  assert.throws(() => createByteRing(4, 0), RangeError);
});
