// Berth's version as reported by Version.Version: containerd's API level it serves, plus our own.
export const berthPackageVersion = "0.1.0";
/** Semver-parsable for clients that compare containerd versions; the build part names Berth. */
export const berthVersion = `1.6.20+berth.${berthPackageVersion}`;
export const berthRevision = process.env.BERTH_REVISION ?? "berth";
