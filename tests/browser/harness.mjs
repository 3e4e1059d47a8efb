// What the browser tests share: the binary and the browser they drive, and a server to drive.
import { spawn } from "node:child_process";

export const BIN = process.env.FANOUT_BIN ?? new URL("../../target/debug/fanout", import.meta.url).pathname;
export const CHROMIUM = process.env.FANOUT_CHROMIUM ?? "/usr/bin/chromium";

/** Starts `fanout serve` on an ephemeral port; resolves with it and its base URL. Its log is
 * read to the end (a closed pipe would stop the server's writes). */
export function serve(args) {
  const server = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", "--database-url", "memory://",
    "--log-format", "json", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let log = "";
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (m) resolve({ server, base: m[1] });
    });
    server.on("exit", () => reject(new Error(`the server stopped: ${log}`)));
  });
}
