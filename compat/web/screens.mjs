// The page on a phone and on a desktop, in both languages, in headless Chromium (Debian's,
// /usr/bin/chromium): served in the language of Accept-Language, no text of the other
// language, nothing wider than the screen, the message field visible; the language switch
// changes the texts and is remembered; an invalid name is refused with the reason, not an
// endless "reconnecting"; "Older messages" shows only when there is something older (the
// gateway runs with --history 2 and the room holds 3 messages).
// Usage: node screens.mjs URL ROOM OUTDIR (screenshots go to OUTDIR/page-<lang>-<width>.png)
import { launch } from "./browser.mjs";

const [url, room, outdir] = process.argv.slice(2);
if (!url || !room || !outdir) {
  console.error("usage: node screens.mjs URL ROOM OUTDIR");
  process.exit(2);
}
const browser = await launch();
const fail = async (why) => { console.error("FAIL: " + why); await browser.close(); process.exit(1); };
const expect = {
  es: { connected: "conectado", words: ["Salas", "En línea", "Enviar"], other: ["Rooms", "Online", "Send", "connected", "Older"] },
  en: { connected: "connected", words: ["Rooms", "Online", "Send"], other: ["Salas", "En línea", "Enviar", "conectado", "Mensajes"] },
};
try {
  for (const lang of ["es", "en"]) {
    for (const width of [360, 1280]) {
      const context = await browser.newContext({ viewport: { width, height: 720 }, locale: lang === "es" ? "es-ES" : "en-US" });
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error(`[${lang} ${width}] page error: ${e.message}`));
      await page.goto(`${url}/?room=${encodeURIComponent(room)}&name=Ana`);
      await page.locator("#status", { hasText: expect[lang].connected }).waitFor({ timeout: 15000 });
      await page.locator("#messages li .text", { hasText: "hola" }).first().waitFor({ timeout: 15000 });
      if ((await page.getAttribute("html", "lang")) !== lang) await fail(`${lang}: <html lang> is not ${lang}`);
      const body = await page.locator("body").innerText();
      const shownText = body + " " + (await page.locator("#text").getAttribute("placeholder"));
      for (const w of expect[lang].words) if (!shownText.includes(w) && width > 640) await fail(`${lang} ${width}: no "${w}" on the page`);
      // Visible text only (the hidden side panel of a phone is not read): no word of the other language.
      const visible = await page.evaluate(() => [...document.querySelectorAll("body *")]
        .filter((el) => el.children.length === 0 && el.checkVisibility && el.checkVisibility())
        .map((el) => el.textContent).join("\n"));
      for (const w of expect[lang].other) if (visible.includes(w)) await fail(`${lang} ${width}: "${w}" of the other language is shown`);
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      if (scroll > width) await fail(`${lang} ${width}: the page is ${scroll} px wide`);
      for (const id of ["#text", "#send-form button[type=submit]"]) {
        const box = await page.locator(id).boundingBox();
        if (!box || box.x < 0 || box.x + box.width > width || box.width < 40) await fail(`${lang} ${width}: ${id} is not fully visible (${JSON.stringify(box)})`);
      }
      // Three messages in the room, two shown on joining (--history 2): one older to offer,
      // and once it is shown, nothing more.
      await page.locator("#older").waitFor({ state: "visible", timeout: 5000 });
      await page.click("#older");
      await page.locator("#messages li .text", { hasText: "hola a todos" }).waitFor({ timeout: 5000 });
      await page.locator("#older").waitFor({ state: "hidden", timeout: 5000 });
      if (width === 360) {
        if (await page.locator("#side").isVisible()) await fail("360: the side panel takes the screen before it is asked for");
        await page.click("#menu");
        await page.locator("#online li", { hasText: "Ana" }).waitFor({ timeout: 5000 });
        await page.screenshot({ path: `${outdir}/page-${lang}-${width}-menu.png` });
        await page.click("#menu");
      }
      await page.screenshot({ path: `${outdir}/page-${lang}-${width}.png` });
      await context.close();
    }
  }
  // The switch: from Spanish to English, kept on the next visit.
  const context = await browser.newContext({ viewport: { width: 360, height: 720 }, locale: "es-ES" });
  const page = await context.newPage();
  await page.goto(`${url}/?room=${encodeURIComponent(room)}&name=Ana`);
  await page.locator("#status", { hasText: "conectado" }).waitFor({ timeout: 15000 });
  await page.selectOption("#lang", "en");
  await page.locator("#send-form button[type=submit]", { hasText: "Send" }).waitFor({ timeout: 5000 });
  await page.locator("#status", { hasText: "connected" }).waitFor({ timeout: 5000 });
  await page.reload();
  await page.locator("#send-form button[type=submit]", { hasText: "Send" }).waitFor({ timeout: 5000 });
  // A name the gateway refuses: the reason, in the page's language, and no retry loop.
  await page.selectOption("#lang", "es");
  await page.locator("#send-form button[type=submit]", { hasText: "Enviar" }).waitFor({ timeout: 5000 });
  await page.fill("#name", "Ana\u202egnp.exe");
  await page.press("#name", "Enter");
  await page.locator("#status", { hasText: "U+202E" }).waitFor({ timeout: 5000 });
  const status = await page.locator("#status").textContent();
  if (!status.includes("quítalo")) await fail(`the refusal is not said in Spanish: ${status}`);
  await page.screenshot({ path: `${outdir}/page-es-360-refused.png` });
  await context.close();
  console.log("OK");
} catch (e) {
  await fail(e.stack || String(e));
}
await browser.close();
