// A protobuf Any as core sees it: an opaque type URL plus bytes, preserved byte for byte.
export interface AnyValue {
  typeUrl: string;
  value: Uint8Array;
}
