// Builds the demo's busybox image offline (from Debian's busybox-static) as an OCI archive.
import { busyboxImage } from "../test/fixtures/busybox.js";
import { writeOciArchive } from "../test/fixtures/oci-image.js";

const out = process.argv[2];
if (!out) throw new Error("usage: build-demo-image.ts OUT.tar");
const result = await writeOciArchive(out, {
  image: await busyboxImage({ format: "oci" }),
  name: "busybox:demo",
});
console.log(`built ${out}: ${result.names.join(", ")} (manifest ${result.manifestDigest})`);
