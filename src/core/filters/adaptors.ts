// Field adaptors for the objects Berth lists and the event envelopes it streams, with the same
// fields and presence rules as containerd's metadata/adaptors.go, introspection and events.
import type { Adaptor } from "./filter.js";

type Field = { value: string; present: boolean };

const absent: Field = Object.freeze({ value: "", present: false });

/** Strings count as present only when non-empty (containerd's `len(x) > 0`). */
function nonEmpty(value: string): Field {
  return { value, present: value.length > 0 };
}

function always(value: string): Field {
  return { value, present: true };
}

/**
 * `labels.<k>` lookups: the rest of the path is joined with ".", so `labels.a.b` and `labels."a.b"`
 * both ask for key "a.b". An empty map has nothing present.
 */
function mapLookup(rest: readonly string[], map: Record<string, string> | undefined): Field {
  if (map === undefined) return absent;
  const key = rest.join(".");
  if (!Object.hasOwn(map, key)) return absent;
  const value = map[key];
  return typeof value === "string" ? always(value) : absent;
}

export function imageAdaptor(img: {
  name: string;
  labels: Record<string, string>;
  target: { digest: string; mediaType: string; annotations?: Record<string, string> };
}): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "name":
        return nonEmpty(img.name);
      case "target":
        if (fieldpath[1] === "digest") return nonEmpty(img.target.digest);
        if (fieldpath[1] === "mediatype") return nonEmpty(img.target.mediaType);
        return absent;
      case "labels":
        return mapLookup(fieldpath.slice(1), img.labels);
      case "annotations":
        return mapLookup(fieldpath.slice(1), img.target.annotations);
      default:
        return absent;
    }
  };
}

export function containerAdaptor(c: {
  id: string;
  image: string;
  runtimeName: string;
  labels: Record<string, string>;
}): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "id":
        return nonEmpty(c.id);
      case "image":
        return nonEmpty(c.image);
      case "runtime":
        return fieldpath[1] === "name" ? nonEmpty(c.runtimeName) : absent;
      case "labels":
        return mapLookup(fieldpath.slice(1), c.labels);
      default:
        return absent;
    }
  };
}

/** `size` is accepted but never present: containerd 1.6 left size filtering as a TODO. */
export function contentAdaptor(i: { digest: string; size: number; labels: Record<string, string> }): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "digest":
        return always(i.digest);
      case "labels":
        return mapLookup(fieldpath.slice(1), i.labels);
      default:
        return absent;
    }
  };
}

export function ingestAdaptor(s: { ref: string }): Adaptor {
  return (fieldpath) => (fieldpath[0] === "ref" ? always(s.ref) : absent);
}

export function leaseAdaptor(l: { id: string; labels: Record<string, string> }): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "id":
        return nonEmpty(l.id);
      case "labels":
        return mapLookup(fieldpath.slice(1), l.labels);
      default:
        return absent;
    }
  };
}

const snapshotKinds = new Set(["active", "view", "committed"]);

export function snapshotAdaptor(s: {
  kind: string;
  name: string;
  parent: string;
  labels: Record<string, string>;
}): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "kind":
        return snapshotKinds.has(s.kind) ? always(s.kind) : absent;
      case "name":
        return always(s.name);
      case "parent":
        return nonEmpty(s.parent);
      case "labels":
        return mapLookup(fieldpath.slice(1), s.labels);
      default:
        return absent;
    }
  };
}

/**
 * `platforms` and `capabilities` are accepted but never present: containerd's introspection
 * service cannot match one of many values, so `platforms==linux/amd64` selects nothing there either.
 */
export function pluginAdaptor(p: {
  type: string;
  id: string;
  platforms: string[];
  capabilities: string[];
}): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "type":
        return nonEmpty(p.type);
      case "id":
        return nonEmpty(p.id);
      default:
        return absent;
    }
  };
}

/** Envelope fields for Events.Subscribe; `event.<...>` is resolved by the payload's own adaptor. */
export function envelopeAdaptor(e: { namespace: string; topic: string; event?: Adaptor }): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "namespace":
        return nonEmpty(e.namespace);
      case "topic":
        return nonEmpty(e.topic);
      case "event":
        return e.event ? e.event(fieldpath.slice(1)) : absent;
      default:
        return absent;
    }
  };
}

// containerd's proto field names are lower snake_case; nothing else can name a field.
const protoFieldName = /^[a-z][a-z0-9_]*$/;

function camelCase(snake: string): string {
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !ArrayBuffer.isView(value) &&
    !(value instanceof Date)
  );
}

function lookupField(obj: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  const camel = camelCase(name);
  return Object.hasOwn(obj, camel) ? obj[camel] : undefined;
}

function objectField(obj: unknown, fieldpath: readonly string[]): Field {
  const [name, ...rest] = fieldpath;
  if (name === undefined || !isRecord(obj) || !protoFieldName.test(name)) return absent;
  const value = lookupField(obj, name);
  if (typeof value === "string") return nonEmpty(value);
  if (typeof value === "boolean") return always(String(value));
  if (!isRecord(value)) return absent; // numbers, enums, lists, bytes, timestamps: not filterable
  // Labels are special-cased by name, as containerd's generated Field methods do.
  if (name === "labels") return mapLookup(rest, value as Record<string, string>);
  const typeName = value["$typeName"];
  if (typeName === "google.protobuf.Timestamp" || typeName === "google.protobuf.Any") return absent;
  return objectField(value, rest);
}

/**
 * A generic adaptor for event payloads (protobuf-es messages or plain objects): a path of proto
 * field names such as `container_id` finds the key `container_id` or `containerId`. As with
 * containerd's generated accessors, strings (present when non-empty), booleans ("true"/"false"),
 * `labels.<k>` and nested messages can be filtered; numbers, lists and timestamps cannot.
 */
export function objectAdaptor(obj: unknown): Adaptor {
  return (fieldpath) => objectField(obj, fieldpath);
}

/** Tasks.Metrics filters: `id` and `namespace` (containerd's getTasksMetrics). */
export function taskAdaptor(t: { id: string; namespace: string }): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case "id":
        return always(t.id);
      case "namespace":
        return always(t.namespace);
      default:
        return absent;
    }
  };
}
