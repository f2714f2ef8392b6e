// The page under `charla web --auth` (issue 18, finding 9), in headless Chromium: a gateway that
// asks for a password shows the login box with the reason, refuses a wrong password and lets
// the right one in; under --auth jwt the token's name replaces the typed one and its messages
// carry the verified mark; a gateway listening on the network says names are not verified.
// Usage: node auth.mjs URL_PASSWORD PASSWORD URL_JWT TOKEN URL_LAN ROOM
import { launch } from "./browser.mjs";

const [urlPw, password, urlJwt, token, urlLan, room] = process.argv.slice(2);
if (!room) {
  console.error("usage: node auth.mjs URL_PASSWORD PASSWORD URL_JWT TOKEN URL_LAN ROOM");
  process.exit(2);
}
const browser = await launch();
const fail = async (why) => { console.error("FAIL: " + why); await browser.close(); process.exit(1); };
// Connected: the status line is up (whatever language it speaks).
const connected = (page) => page.waitForFunction(() => {
  const s = document.getElementById("status");
  return s && !s.classList.contains("down") && s.textContent.trim() !== "…";
}, null, { timeout: 15000 });
const open = async (url, name) => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(`${url}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
  return page;
};
const login = async (page, secret) => {
  await page.locator("#login-dialog[open]").waitFor({ timeout: 15000 });
  await page.fill("#login-token", secret);
  await page.press("#login-token", "Enter");
};
try {
  // Password: asked, a wrong one asked again with the reason, the right one connects.
  const ana = await open(urlPw, "Ana");
  await login(ana, "not-the-password");
  await ana.locator("#login-reason", { hasText: "wrong password" }).waitFor({ timeout: 15000 });
  await login(ana, password);
  await connected(ana);
  await ana.fill("#text", "dentro con contraseña");
  await ana.press("#text", "Enter");
  await ana.locator("#messages li .text", { hasText: "dentro con contraseña" }).waitFor({ timeout: 15000 });
  if (await ana.locator("#messages li .verified").count()) await fail("a password does not prove a name");

  // JWT: typed "Eve", the token says Vic; the message is marked.
  const vic = await open(urlJwt, "Eve");
  await login(vic, token);
  await connected(vic);
  await vic.fill("#text", "soy Vic de verdad");
  await vic.press("#text", "Enter");
  const line = vic.locator("#messages li", { hasText: "soy Vic de verdad" });
  await line.locator(".verified").waitFor({ timeout: 15000 });
  const who = await line.locator(".who").textContent();
  if (who !== "Vic") await fail(`the token's name, not the typed one: ${who}`);
  if ((await vic.inputValue("#name")) !== "Vic") await fail("the name box shows the token's name");
  await vic.locator("#online li", { hasText: "Vic" }).locator(".verified").waitFor({ timeout: 15000 });

  // Listening on the network without authentication: the page says names are not verified.
  const lan = await open(urlLan, "Beto");
  await connected(lan);
  await lan.locator("#messages li.error").first().waitFor({ timeout: 15000 });
  console.log("OK: login box, wrong password refused, token name and mark, LAN notice");
} catch (e) {
  await fail(e.message);
}
await browser.close();
