// A bounded single-producer, single-consumer byte queue between two threads over one
// SharedArrayBuffer: a fixed number of fixed-size slots, filled by the producer and handed to the
// consumer whole. The producer waits (asynchronously) while every slot is full, so memory is bounded
// whatever the stream; the consumer waits while none is ready. Either side can stop the other: the
// producer by ending or failing the stream, the consumer by aborting it.

/** Int32 indices of the control block. */
const HEAD = 0; // slots published (producer)
const TAIL = 1; // slots released (consumer)
const PSEQ = 2; // bumped on every producer event: publish, end, fail
const CSEQ = 3; // bumped on every consumer event: release, abort
const STATE = 4;
const ABORT = 5;
const PWAIT = 6; // 1 while the producer waits (or is about to) for CSEQ to move
const CWAIT = 7; // 1 while the consumer waits (or is about to) for PSEQ to move
const LENGTHS = 8; // then one length per slot

// STATE: 0 while running, then ENDED or FAILED.
const ENDED = 1;
const FAILED = 2;

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
) => { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
/** Atomics.waitAsync (ES2024, in Node since 16; not in this project's TypeScript lib). */
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync.bind(Atomics);

/** What crosses to the other thread (postMessage shares the buffer, it does not copy it). */
export interface ByteRing {
  buffer: SharedArrayBuffer;
  slots: number;
  slotSize: number;
}

export function createByteRing(slots: number, slotSize: number): ByteRing {
  if (!(Number.isInteger(slots) && slots >= 2 && Number.isInteger(slotSize) && slotSize >= 1))
    throw new RangeError(`byte ring: bad geometry ${slots} x ${slotSize}`);
  const control = (LENGTHS + slots) * 4;
  return { buffer: new SharedArrayBuffer(control + slots * slotSize), slots, slotSize };
}

/**
 * Makes a ring new again for the next stream. Only while neither side uses it: the producer of
 * the last stream has ended, failed or seen the abort, and the consumer is done reading.
 */
export function resetByteRing(ring: ByteRing): void {
  views(ring).control.fill(0);
}

function views(ring: ByteRing): { control: Int32Array; dataOffset: number } {
  return {
    control: new Int32Array(ring.buffer, 0, LENGTHS + ring.slots),
    dataOffset: (LENGTHS + ring.slots) * 4,
  };
}

/** Thrown by the producer's write() once the consumer aborted. */
export class RingAborted extends Error {
  constructor() {
    super("the consumer stopped reading");
  }
}

/** Thrown by the consumer's next() once the producer failed (its own error travels separately). */
export class RingFailed extends Error {
  constructor() {
    super("the producer failed");
  }
}

export class RingProducer {
  private readonly control: Int32Array;
  private readonly data: Uint8Array;
  private head = 0;
  private fill = 0;

  constructor(private readonly ring: ByteRing) {
    const v = views(ring);
    this.control = v.control;
    this.data = new Uint8Array(ring.buffer, v.dataOffset, ring.slots * ring.slotSize);
  }

  /** Copies chunk in, publishing each slot as it fills; waits while all slots are taken. */
  async write(chunk: Uint8Array): Promise<void> {
    const { slots, slotSize } = this.ring;
    let off = 0;
    while (off < chunk.length) {
      if (this.fill === 0) await this.slotFree();
      const base = (this.head % slots) * slotSize;
      const n = Math.min(slotSize - this.fill, chunk.length - off);
      this.data.set(chunk.subarray(off, off + n), base + this.fill);
      this.fill += n;
      off += n;
      if (this.fill === slotSize) this.publish();
    }
  }

  /** The stream is complete: publishes what is left and tells the consumer. */
  end(): void {
    this.publish();
    this.finish(ENDED);
  }

  /** The stream is broken: the consumer's next() throws RingFailed. */
  fail(): void {
    this.finish(FAILED);
  }

  get aborted(): boolean {
    return Atomics.load(this.control, ABORT) !== 0;
  }

  private publish(): void {
    if (this.fill === 0) return;
    this.control[LENGTHS + (this.head % this.ring.slots)] = this.fill;
    this.fill = 0;
    this.head = (this.head + 1) | 0;
    Atomics.store(this.control, HEAD, this.head);
    this.signal();
  }

  private finish(state: number): void {
    Atomics.store(this.control, STATE, state);
    this.signal();
  }

  private signal(): void {
    Atomics.add(this.control, PSEQ, 1);
    // Waking a waiter costs a cross-thread task; most events find the consumer busy, not waiting.
    if (Atomics.load(this.control, CWAIT) !== 0) Atomics.notify(this.control, PSEQ);
  }

  private async slotFree(): Promise<void> {
    if (this.hasFreeSlot()) return;
    // The flag goes up before the sequence is read: an event after the read either sees the flag
    // (and notifies) or changed the sequence first (and waitAsync returns at once).
    Atomics.store(this.control, PWAIT, 1);
    try {
      for (;;) {
        const seq = Atomics.load(this.control, CSEQ);
        if (this.hasFreeSlot()) return;
        const w = waitAsync(this.control, CSEQ, seq);
        if (w.async) await w.value;
      }
    } finally {
      Atomics.store(this.control, PWAIT, 0);
    }
  }

  private hasFreeSlot(): boolean {
    if (this.aborted) throw new RingAborted();
    return ((this.head - Atomics.load(this.control, TAIL)) | 0) < this.ring.slots;
  }
}

export class RingConsumer implements AsyncIterator<Buffer> {
  private readonly control: Int32Array;
  private readonly dataOffset: number;
  private tail = 0;
  private holding = false;

  /** stopped: rejects if the producer's thread dies without ending or failing the stream. */
  constructor(
    private readonly ring: ByteRing,
    private readonly stopped: Promise<never>,
  ) {
    const v = views(ring);
    this.control = v.control;
    this.dataOffset = v.dataOffset;
  }

  /**
   * The next slot's bytes, as a view into the shared buffer: valid only until the next call (the
   * slot is handed back to the producer then), so the caller must be done with it, or copy it.
   */
  async next(): Promise<IteratorResult<Buffer>> {
    this.release();
    const ready = this.poll();
    if (ready !== null) return ready;
    Atomics.store(this.control, CWAIT, 1); // see RingProducer.slotFree
    try {
      for (;;) {
        const seq = Atomics.load(this.control, PSEQ);
        const result = this.poll();
        if (result !== null) return result;
        const w = waitAsync(this.control, PSEQ, seq);
        if (w.async) await Promise.race([w.value, this.stopped]);
      }
    } finally {
      Atomics.store(this.control, CWAIT, 0);
    }
  }

  /** The next slot, the end, or null when there is nothing yet. */
  private poll(): IteratorResult<Buffer> | null {
    if (Atomics.load(this.control, HEAD) !== this.tail) {
      const slot = this.tail % this.ring.slots;
      const length = this.control[LENGTHS + slot]!;
      this.holding = true;
      const start = this.dataOffset + slot * this.ring.slotSize;
      return { done: false, value: Buffer.from(this.ring.buffer, start, length) };
    }
    const state = Atomics.load(this.control, STATE);
    if (state === ENDED) return { done: true, value: undefined };
    if (state === FAILED) throw new RingFailed();
    return null;
  }

  /** Tells the producer to stop (its pending and later writes throw RingAborted). */
  abort(): void {
    this.release();
    Atomics.store(this.control, ABORT, 1);
    this.signal();
  }

  private release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.tail = (this.tail + 1) | 0;
    Atomics.store(this.control, TAIL, this.tail);
    this.signal();
  }

  private signal(): void {
    Atomics.add(this.control, CSEQ, 1);
    if (Atomics.load(this.control, PWAIT) !== 0) Atomics.notify(this.control, CSEQ);
  }
}
