// Adaptors under real filters: which objects each filter selects, with containerd's field names
// and presence rules (metadata/adaptors.go, the introspection service, event envelopes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFilters, type Adaptor } from "./filter.js";
import {
  containerAdaptor,
  contentAdaptor,
  envelopeAdaptor,
  imageAdaptor,
  ingestAdaptor,
  leaseAdaptor,
  objectAdaptor,
  pluginAdaptor,
  snapshotAdaptor,
} from "./adaptors.js";

/** An adaptor's input plus a short key naming it in assertions. */
type Keyed<A extends (input: never) => Adaptor> = Parameters<A>[0] & { key: string };

/** Names of the items the filters select, in order. */
function pick<T extends { key: string }>(
  items: T[],
  adapt: (item: T) => Adaptor,
  filters: string[],
): string[] {
  const filter = parseFilters(filters);
  return items.filter((item) => filter.match(adapt(item))).map((item) => item.key);
}

const d1 = "sha256:" + "1".repeat(64);
const d2 = "sha256:" + "2".repeat(64);

void test("images: name, target.digest, target.mediatype, labels, annotations", () => {
  const images: Keyed<typeof imageAdaptor>[] = [
    {
      key: "busybox",
      name: "docker.io/library/busybox:latest",
      labels: { "containerd.io/gc.ref": "x", env: "prod" },
      target: {
        digest: d1,
        mediaType: "application/vnd.oci.image.index.v1+json",
        annotations: { "org.opencontainers.image.ref.name": "latest" },
      },
    },
    {
      key: "alpine",
      name: "docker.io/library/alpine:3",
      labels: {},
      target: { digest: d2, mediaType: "application/vnd.docker.distribution.manifest.v2+json" },
    },
  ];
  const sel = (...f: string[]) => pick(images, imageAdaptor, f);
  assert.deepEqual(sel('name=="docker.io/library/busybox:latest"'), ["busybox"]);
  assert.deepEqual(sel("name==docker.io/library/alpine:3"), ["alpine"]);
  assert.deepEqual(sel("name~=|library/al|"), ["alpine"]);
  assert.deepEqual(sel(`target.digest==${d2}`), ["alpine"]);
  assert.deepEqual(sel("target.mediatype~=oci"), ["busybox"]);
  // The field is spelled "mediatype", not "mediaType" or "media_type".
  assert.deepEqual(sel("target.mediaType"), []);
  assert.deepEqual(sel("target.media_type"), []);
  assert.deepEqual(sel("target"), []);
  assert.deepEqual(sel('labels."containerd.io/gc.ref"'), ["busybox"]);
  assert.deepEqual(sel("labels.env==prod"), ["busybox"]);
  assert.deepEqual(sel("labels.env!=prod"), ["alpine"]);
  assert.deepEqual(sel('annotations."org.opencontainers.image.ref.name"==latest'), ["busybox"]);
  // The remaining path is joined with ".", so an unquoted dotted key finds the same label.
  assert.deepEqual(sel("annotations.org.opencontainers.image.ref.name==latest"), ["busybox"]);
  assert.deepEqual(sel("labels.env", "target.mediatype~=docker"), ["busybox", "alpine"]);
  assert.deepEqual(sel("size"), []);
});

void test("containers: id, image, runtime.name, labels", () => {
  const containers: Keyed<typeof containerAdaptor>[] = [
    {
      key: "web",
      id: "web",
      image: "docker.io/library/nginx:1",
      runtimeName: "io.containerd.runc.v2",
      labels: { tier: "front" },
    },
    { key: "job", id: "job", image: "", runtimeName: "io.containerd.runsc.v1", labels: {} },
  ];
  const sel = (...f: string[]) => pick(containers, containerAdaptor, f);
  assert.deepEqual(sel("id==job"), ["job"]);
  assert.deepEqual(sel("image"), ["web"]);
  assert.deepEqual(sel('image==""'), []);
  assert.deepEqual(sel("image!=docker.io/library/nginx:1"), ["job"]);
  assert.deepEqual(sel("runtime.name==io.containerd.runc.v2"), ["web"]);
  assert.deepEqual(sel("runtime.name~=runsc"), ["job"]);
  assert.deepEqual(sel("runtime"), []);
  assert.deepEqual(sel("runtime.options"), []);
  assert.deepEqual(sel("labels.tier==front"), ["web"]);
  assert.deepEqual(sel("labels.tier"), ["web"]);
});

void test("content: digest is always present, size is not filterable (as in containerd 1.6)", () => {
  const blobs: Keyed<typeof contentAdaptor>[] = [
    { key: "a", digest: d1, size: 10, labels: { "containerd.io/gc.root": "t" } },
    { key: "b", digest: d2, size: 20, labels: {} },
  ];
  const sel = (...f: string[]) => pick(blobs, contentAdaptor, f);
  assert.deepEqual(sel("digest"), ["a", "b"]);
  assert.deepEqual(sel(`digest==${d1}`), ["a"]);
  assert.deepEqual(sel("digest~=^sha256:2"), ["b"]);
  assert.deepEqual(sel("size"), []);
  assert.deepEqual(sel("size==10"), []);
  assert.deepEqual(sel('labels."containerd.io/gc.root"'), ["a"]);
});

void test("ingests: ref", () => {
  const ingests: Keyed<typeof ingestAdaptor>[] = [
    { key: "one", ref: "manifest-sha256:abc" },
    { key: "two", ref: "layer-sha256:def" },
  ];
  const sel = (...f: string[]) => pick(ingests, ingestAdaptor, f);
  assert.deepEqual(sel("ref~=^layer-"), ["two"]);
  assert.deepEqual(sel("ref==manifest-sha256:abc"), ["one"]);
  assert.deepEqual(sel("ref"), ["one", "two"]);
  assert.deepEqual(sel("digest"), []);
});

void test("leases: id, labels (the cases checked against containerd 1.6)", () => {
  const leases: Keyed<typeof leaseAdaptor>[] = [
    { key: "l1", id: "l1", labels: { foo: "bar", "a.b": "c d", x: "/tasks/exit" } },
    { key: "l2", id: "l2", labels: { foo: "baz" } },
    { key: "l3", id: "l3", labels: {} },
  ];
  const sel = (...f: string[]) => pick(leases, leaseAdaptor, f);
  assert.deepEqual(sel("labels.foo"), ["l1", "l2"]);
  assert.deepEqual(sel("labels.foo!=bar"), ["l2", "l3"]);
  assert.deepEqual(sel('labels."a.b"=="c d"'), ["l1"]);
  assert.deepEqual(sel("labels.x~=|^/tasks/|"), ["l1"]);
  assert.deepEqual(sel('labels.foo!=""'), ["l1", "l2"]);
  assert.deepEqual(sel("id==l1", "id==l2"), ["l1", "l2"]);
  assert.deepEqual(sel("id==l1,labels.foo", "labels.foo==baz"), ["l1", "l2"]);
  assert.deepEqual(sel('labels.""'), []);
  // Keys of Object.prototype are not labels.
  assert.deepEqual(sel("labels.constructor"), []);
  assert.deepEqual(sel("labels.toString"), []);
});

void test("snapshots: kind, name (always present), parent (present when set), labels", () => {
  const snapshots: Keyed<typeof snapshotAdaptor>[] = [
    {
      key: "base",
      kind: "committed",
      name: "base",
      parent: "",
      labels: { "containerd.io/snapshot.ref": "sha256:x" },
    },
    { key: "rw", kind: "active", name: "rw", parent: "base", labels: {} },
    { key: "ro", kind: "view", name: "ro", parent: "base", labels: {} },
    { key: "odd", kind: "unknown", name: "", parent: "", labels: {} },
  ];
  const sel = (...f: string[]) => pick(snapshots, snapshotAdaptor, f);
  assert.deepEqual(sel("kind"), ["base", "rw", "ro"]);
  assert.deepEqual(sel("kind==committed"), ["base"]);
  assert.deepEqual(sel("kind!=committed"), ["rw", "ro", "odd"]);
  assert.deepEqual(sel("name"), ["base", "rw", "ro", "odd"]);
  assert.deepEqual(sel('name==""'), ["odd"]);
  assert.deepEqual(sel("parent"), ["rw", "ro"]);
  assert.deepEqual(sel("parent==base,kind==view"), ["ro"]);
  assert.deepEqual(sel('labels."containerd.io/snapshot.ref"'), ["base"]);
});

void test("plugins: type and id; platforms and capabilities never match (containerd leaves them TODO)", () => {
  const plugins: Keyed<typeof pluginAdaptor>[] = [
    {
      key: "overlayfs",
      type: "io.containerd.snapshotter.v1",
      id: "overlayfs",
      platforms: ["linux/amd64"],
      capabilities: [],
    },
    {
      key: "native",
      type: "io.containerd.snapshotter.v1",
      id: "native",
      platforms: ["linux/amd64"],
      capabilities: ["x"],
    },
    { key: "tasks", type: "io.containerd.service.v1", id: "tasks-service", platforms: [], capabilities: [] },
  ];
  const sel = (...f: string[]) => pick(plugins, pluginAdaptor, f);
  assert.deepEqual(sel("type==io.containerd.snapshotter.v1"), ["overlayfs", "native"]);
  assert.deepEqual(sel("type==io.containerd.snapshotter.v1,id~=^n"), ["native"]);
  assert.deepEqual(sel("id==tasks-service"), ["tasks"]);
  assert.deepEqual(sel("platforms"), []);
  assert.deepEqual(sel("platforms==linux/amd64"), []);
  assert.deepEqual(sel("platforms!=linux/amd64"), ["overlayfs", "native", "tasks"]);
  assert.deepEqual(sel("capabilities"), []);
  assert.deepEqual(sel('capabilities!=""'), []);
});

// Shaped like protobuf-es messages: camelCase keys, $typeName, bigint/number scalars, Timestamp messages.
const taskExit = {
  $typeName: "containerd.events.TaskExit",
  containerId: "web",
  id: "web",
  pid: 4242,
  exitStatus: 137,
  exitedAt: { $typeName: "google.protobuf.Timestamp", seconds: 1n, nanos: 0 },
};
const containerCreate = {
  $typeName: "containerd.events.ContainerCreate",
  id: "job",
  image: "docker.io/library/alpine:3",
  runtime: { $typeName: "containerd.events.ContainerCreate.Runtime", name: "io.containerd.runc.v2" },
};
const imageCreate = {
  $typeName: "containerd.services.images.v1.ImageCreate",
  name: "docker.io/library/busybox:latest",
  labels: { "a.b": "c", env: "" },
};
const snapshotPrepare = { key: "k", parent: "", snapshotter: "overlayfs" };
const checkpointed = { container_id: "snake", checkpoint: "", paused: true, deleted: false };

void test("objectAdaptor: strings by proto (snake_case) name, present when non-empty", () => {
  const a = objectAdaptor(taskExit);
  assert.deepEqual(a(["container_id"]), { value: "web", present: true });
  assert.deepEqual(a(["id"]), { value: "web", present: true });
  // Only proto names address fields, as with containerd's generated accessors.
  assert.deepEqual(a(["containerId"]), { value: "", present: false });
  assert.deepEqual(a(["$typeName"]), { value: "", present: false });
  assert.deepEqual(objectAdaptor(snapshotPrepare)(["parent"]), { value: "", present: false });
  assert.deepEqual(objectAdaptor(checkpointed)(["container_id"]), { value: "snake", present: true });
});

void test("objectAdaptor: numbers, timestamps and lists are not filterable; booleans are", () => {
  const a = objectAdaptor(taskExit);
  assert.deepEqual(a(["pid"]), { value: "", present: false });
  assert.deepEqual(a(["exit_status"]), { value: "", present: false });
  assert.deepEqual(a(["exited_at"]), { value: "", present: false });
  assert.deepEqual(a(["exited_at", "seconds"]), { value: "", present: false });
  assert.deepEqual(objectAdaptor({ list: ["a"] })(["list"]), { value: "", present: false });
  const b = objectAdaptor(checkpointed);
  assert.deepEqual(b(["paused"]), { value: "true", present: true });
  assert.deepEqual(b(["deleted"]), { value: "false", present: true });
});

void test("objectAdaptor: nested messages and labels", () => {
  const c = objectAdaptor(containerCreate);
  assert.deepEqual(c(["runtime", "name"]), { value: "io.containerd.runc.v2", present: true });
  assert.deepEqual(c(["runtime"]), { value: "", present: false });
  assert.deepEqual(c(["runtime", "options"]), { value: "", present: false });
  const i = objectAdaptor(imageCreate);
  assert.deepEqual(i(["labels", "a.b"]), { value: "c", present: true });
  assert.deepEqual(i(["labels", "a", "b"]), { value: "c", present: true });
  assert.deepEqual(i(["labels", "env"]), { value: "", present: true });
  assert.deepEqual(i(["labels", "missing"]), { value: "", present: false });
  assert.deepEqual(objectAdaptor(undefined)(["id"]), { value: "", present: false });
  assert.deepEqual(objectAdaptor(taskExit)([]), { value: "", present: false });
});

void test("envelopes: namespace, topic and event.<field> through the payload's adaptor", () => {
  const envelopes = [
    { key: "exit", namespace: "default", topic: "/tasks/exit", event: objectAdaptor(taskExit) },
    {
      key: "create",
      namespace: "k8s.io",
      topic: "/containers/create",
      event: objectAdaptor(containerCreate),
    },
    { key: "image", namespace: "default", topic: "/images/create", event: objectAdaptor(imageCreate) },
    { key: "bare", namespace: "default", topic: "/snapshot/prepare" },
  ];
  const sel = (...f: string[]) => pick(envelopes, envelopeAdaptor, f);
  assert.deepEqual(sel('topic=="/tasks/exit"'), ["exit"]);
  assert.deepEqual(sel("topic~=|^/(tasks\\|containers)/|"), ["exit", "create"]);
  assert.deepEqual(sel("namespace==k8s.io"), ["create"]);
  assert.deepEqual(sel("namespace==default,topic~=|^/images/|"), ["image"]);
  assert.deepEqual(sel("event.container_id==web"), ["exit"]);
  assert.deepEqual(sel("event.id"), ["exit", "create"]);
  assert.deepEqual(sel("event.runtime.name~=runc"), ["create"]);
  assert.deepEqual(sel('event.labels."a.b"==c'), ["image"]);
  assert.deepEqual(sel("event.pid==4242"), []);
  assert.deepEqual(sel("event"), []);
  assert.deepEqual(sel("event.id==web", "namespace==k8s.io"), ["exit", "create"]);
  assert.deepEqual(sel("timestamp"), []);
});
