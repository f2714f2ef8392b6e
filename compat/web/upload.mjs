// Exercise 2 in a real browser (Debian's headless Chromium): a picture chosen with the page's
// 📎 button goes to `charla web --uploads`, a `charla work` turns it into a thumbnail, and the
// uploader's page shows "miniatura lista" with the thumbnail (at most 200×200 px).
// Usage: node upload.mjs URL ROOM PICTURE [SCREENSHOT.png]
import { launch } from "./browser.mjs";

const [url, room, picture, screenshot] = process.argv.slice(2);
if (!url || !room || !picture) {
  console.error("usage: node upload.mjs URL ROOM PICTURE [SCREENSHOT.png]");
  process.exit(2);
}
const browser = await launch();
const fail = async (why) => { console.error("FAIL: " + why); await browser.close(); process.exit(1); };
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 600 }, locale: "es-ES" });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${url}/?room=${encodeURIComponent(room)}&name=Ana`);
  await page.locator("#status", { hasText: "conectado" }).waitFor({ timeout: 15000 });
  await page.locator("#attach").waitFor({ state: "visible", timeout: 15000 });
  await page.setInputFiles("#file", picture);
  // The upload is said in the room with the picture, then the worker's thumbnail.
  await page.locator("#messages li .text", { hasText: "📎" }).waitFor({ timeout: 15000 });
  const thumb = page.locator("#messages li img.upload[src*='.thumb.']");
  await thumb.waitFor({ timeout: 60000 });
  const ready = page.locator("#messages li .text", { hasText: "miniatura lista" });
  await ready.waitFor({ timeout: 15000 });
  const size = await thumb.evaluate((img) => new Promise((done) => {
    const measure = () => done([img.naturalWidth, img.naturalHeight]);
    if (img.complete) measure(); else img.onload = measure;
  }));
  if (!(size[0] > 0 && size[0] <= 200 && size[1] > 0 && size[1] <= 200)) await fail("thumbnail size " + size);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(`OK: thumbnail ${size[0]}x${size[1]} shown to the uploader`);
} catch (e) {
  await fail(e.message);
}
await browser.close();
