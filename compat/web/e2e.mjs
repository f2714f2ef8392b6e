// Two pages on two `charla web` gateways, in headless Chromium (Debian's, /usr/bin/chromium):
// a message typed in one appears in the other; a script-injection attempt shows as text and
// runs nothing. Usage: node e2e.mjs URL_A URL_B ROOM [SCREENSHOT.png]
import { launch } from "./browser.mjs";

const [urlA, urlB, room, screenshot] = process.argv.slice(2);
if (!urlA || !urlB || !room) {
  console.error("usage: node e2e.mjs URL_A URL_B ROOM [SCREENSHOT.png]");
  process.exit(2);
}
const browser = await launch();
const fail = async (why) => { console.error("FAIL: " + why); await browser.close(); process.exit(1); };
try {
  const open = async (url, name) => {
    // A Spanish-speaking browser (Accept-Language: es-ES): the page answers in Spanish.
    const page = await browser.newPage({ viewport: { width: 1000, height: 640 }, locale: "es-ES" });
    page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
    page.on("dialog", async (d) => { console.error(`[${name}] dialog: ${d.message()}`); await d.dismiss(); });
    await page.goto(`${url}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
    await page.locator("#status", { hasText: "conectado" }).waitFor({ timeout: 15000 });
    return page;
  };
  const ana = await open(urlA, "Ana");
  const beto = await open(urlB, "Beto");
  // Each sees the other online.
  await ana.locator("#online li", { hasText: "Beto" }).waitFor({ timeout: 15000 });
  await beto.locator("#online li", { hasText: "Ana" }).waitFor({ timeout: 15000 });

  await ana.fill("#text", "Hola Beto, ¿me lees? 👋");
  await ana.press("#text", "Enter");
  await beto.locator("#messages li .text", { hasText: "Hola Beto, ¿me lees? 👋" }).waitFor({ timeout: 15000 });
  await beto.fill("#text", "¡Sí, Ana! Te leo desde el otro gateway");
  await beto.press("#text", "Enter");
  await ana.locator("#messages li .text", { hasText: "Te leo desde el otro gateway" }).waitFor({ timeout: 15000 });

  const attack = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>negrita</b>`;
  await ana.fill("#text", attack);
  await ana.press("#text", "Enter");
  const shown = beto.locator("#messages li .text", { hasText: "onerror" });
  await shown.waitFor({ timeout: 15000 });
  if ((await shown.textContent()) !== attack) await fail("the injection attempt is not shown as its exact text");
  if ((await beto.locator("#messages img, #messages script, #messages b").count()) !== 0) await fail("user text became markup");
  for (const p of [ana, beto]) {
    if ((await p.evaluate(() => window.pwned)) !== undefined) await fail("a script from a message ran");
  }
  // The archive's search, in the page (the archive may be a moment behind live delivery).
  if (process.env.ARCHIVE === "1") {
    await ana.locator("#search-box").waitFor({ state: "visible", timeout: 15000 });
    let found = false;
    for (let i = 0; i < 30 && !found; i++) {
      await ana.fill("#q", "gateway");
      await ana.press("#q", "Enter");
      found = await ana.locator("#results li .text", { hasText: "Te leo desde el otro gateway" })
        .waitFor({ timeout: 500 }).then(() => true, () => false);
    }
    if (!found) await fail("the search box did not find the message in the archive");
  }
  // A name is user text too.
  // (names have at most 32 characters)
  const evil = await open(urlB, `<i>x</i><svg onload=pwned=3>`);
  await ana.locator("#online li", { hasText: "<i>x</i>" }).waitFor({ timeout: 15000 });
  if ((await ana.locator("#online i, #online svg").count()) !== 0) await fail("a name became markup");
  if ((await ana.evaluate(() => window.pwned)) !== undefined) await fail("a script from a name ran");
  await evil.close();
  if (screenshot) {
    await beto.fill("#text", "");
    await beto.screenshot({ path: screenshot });
  }
  console.log("OK: messages cross gateways; injection shown as text, nothing ran");
} catch (e) {
  await fail(e.stack || String(e));
}
await browser.close();
