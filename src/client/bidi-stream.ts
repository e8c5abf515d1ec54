// A bidirectional call as an object: send() with backpressure, end() to half-close, and the
// responses pulled one at a time (recv) or iterated (responses); failures are BerthErrors.
import type * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { BerthError } from "../errdefs/errors.js";
import { ResponseQueue } from "./response-queue.js";

export interface BidiStream<I extends DescMessage, O extends DescMessage> {
  /**
   * Sends one request; resolves once grpc-js has handed it to the transport (so awaiting each
   * send keeps memory bounded). Rejects with the call's error if the call is already over.
   */
  send(msg: MessageInitShape<I>): Promise<void>;
  /** Half-closes: the server sees the end of the requests and may finish the call. */
  end(): void;
  /** The next response, or undefined once the server has finished; rejects with the call's error. */
  recv(): Promise<MessageShape<O> | undefined>;
  /** The remaining responses (shares its position with recv); leaving the loop early cancels the call. */
  readonly responses: AsyncIterable<MessageShape<O>>;
  /** Cancels the call; pending and later reads fail with code "canceled". */
  cancel(): void;
}

export class GrpcBidiStream<I extends DescMessage, O extends DescMessage> implements BidiStream<I, O> {
  readonly #call: grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>>;
  readonly #input: I;
  readonly #queue: ResponseQueue<MessageShape<O>>;
  #ended = false;

  constructor(call: grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>>, input: I, onDone: () => void) {
    this.#call = call;
    this.#input = input;
    this.#queue = new ResponseQueue(call);
    call.once("status", onDone);
  }

  send(msg: MessageInitShape<I>): Promise<void> {
    if (this.#queue.failure) return Promise.reject(this.#queue.failure);
    if (this.#ended) return Promise.reject(new BerthError("failed-precondition", "send after end"));
    const message = create(this.#input, msg);
    return new Promise((resolve, reject) => {
      let settled = false;
      const onStatus = (): void => {
        // The call ended before the write went out: report its error rather than wait forever.
        if (settled) return;
        settled = true;
        const failure = this.#queue.failure;
        if (failure) reject(failure);
        else resolve();
      };
      this.#call.once("status", onStatus);
      this.#call.write(message, () => {
        this.#call.removeListener("status", onStatus);
        if (settled) return;
        settled = true;
        resolve();
      });
    });
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#call.end();
  }

  async recv(): Promise<MessageShape<O> | undefined> {
    const r = await this.#queue.next();
    return r.done ? undefined : r.value;
  }

  get responses(): AsyncIterable<MessageShape<O>> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => this.#queue.next(),
        return: async () => {
          if (!this.#queue.settled) this.cancel();
          return { done: true, value: undefined };
        },
      }),
    };
  }

  cancel(): void {
    this.#call.cancel();
  }
}
