// ttrpc framing: a 10-byte header (payload length u32 BE, stream id u32 BE, type u8, flags u8)
// followed by at most 4 MiB of payload.

export const headerLength = 10;
export const maxPayload = 4 << 20;

export const MessageType = { request: 1, response: 2, data: 3 } as const;

export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  payload: Buffer;
}

export function encodeFrame(f: Frame): Buffer {
  if (f.payload.length > maxPayload)
    throw new Error(`ttrpc payload of ${f.payload.length} bytes exceeds ${maxPayload}`);
  const header = Buffer.alloc(headerLength);
  header.writeUInt32BE(f.payload.length, 0);
  header.writeUInt32BE(f.streamId, 4);
  header.writeUInt8(f.type, 8);
  header.writeUInt8(f.flags, 9);
  return Buffer.concat([header, f.payload]);
}

/** Accumulates bytes from a socket and yields whole frames; throws on an oversized frame. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    while (this.buf.length >= headerLength) {
      const length = this.buf.readUInt32BE(0);
      if (length > maxPayload) throw new Error(`ttrpc frame of ${length} bytes exceeds ${maxPayload}`);
      if (this.buf.length < headerLength + length) break;
      frames.push({
        streamId: this.buf.readUInt32BE(4),
        type: this.buf.readUInt8(8),
        flags: this.buf.readUInt8(9),
        payload: Buffer.from(this.buf.subarray(headerLength, headerLength + length)),
      });
      this.buf = this.buf.subarray(headerLength + length);
    }
    return frames;
  }
}
