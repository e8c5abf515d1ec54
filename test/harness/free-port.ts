// A TCP port for a test server (a registry, berthd's metrics endpoint) that the kernel says is free.
import { createServer } from "node:net";

/** A port that was free a moment ago: listen on port 0, read the port, close. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port from listen(0)"))));
    });
  });
}
