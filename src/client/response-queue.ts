// Buffers the responses of a streaming call for pull-style reading (recv / for await), with
// backpressure: the grpc-js stream is paused while enough responses wait unread.
import type { Readable } from "node:stream";
import type { BerthError } from "../errdefs/errors.js";
import { errorFromGrpc } from "./client-error.js";

/** Unread responses above which the stream is paused (HTTP/2 flow control then holds the server). */
const highWater = 16;

type Waiter<T> = { resolve: (r: IteratorResult<T, undefined>) => void; reject: (e: BerthError) => void };

export class ResponseQueue<T> {
  readonly #stream: Readable;
  readonly #items: T[] = [];
  readonly #waiters: Waiter<T>[] = [];
  /** The call's error, kept until every response before it was read. */
  #failure: BerthError | undefined;
  #ended = false;

  constructor(stream: Readable) {
    this.#stream = stream;
    stream.on("data", (msg: T) => {
      const waiter = this.#waiters.shift();
      if (waiter) waiter.resolve({ done: false, value: msg });
      else {
        this.#items.push(msg);
        if (this.#items.length >= highWater) stream.pause();
      }
    });
    // grpc-js ends the readable side and then emits the status as an "error"; responses still
    // buffered in the stream arrive before "end", so the error is only delivered after them.
    stream.on("error", (err: unknown) => {
      this.#failure ??= errorFromGrpc(err);
      if (this.#stream.readableEnded) this.#finish();
    });
    stream.on("end", () => this.#finish());
  }

  /** The call's error once it has failed (whether or not it was read yet). */
  get failure(): BerthError | undefined {
    return this.#failure;
  }

  /** Whether every response has been delivered or the call has failed. */
  get settled(): boolean {
    return this.#ended || this.#failure !== undefined;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    const item = this.#items.shift();
    if (item !== undefined) {
      if (this.#items.length < highWater && this.#stream.isPaused()) this.#stream.resume();
      return Promise.resolve({ done: false, value: item });
    }
    if (this.#ended) {
      return this.#failure
        ? Promise.reject(this.#failure)
        : Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const w of this.#waiters.splice(0)) {
      if (this.#failure) w.reject(this.#failure);
      else w.resolve({ done: true, value: undefined });
    }
  }
}
