// Debian's Chromium (CHROMIUM, default /usr/bin/chromium), headless, started the same way by
// every page test here: no sandbox (tests run as root), nothing that reaches the network on
// its own (no updates, no sync, no QUIC probes).
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
