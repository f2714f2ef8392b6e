// charla's page. Everything users write is put into the page with textContent, never as
// HTML: a message or a name is shown exactly as typed and can never become markup or script.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { ws: null, room: null, name: null, online: new Set(), verified: new Set(), retry: 500, oldest: null, seen: new Set(),
  // The password or token (charla web --auth password|jwt): kept for this tab only.
  token: sessionStorage.getItem("charla.token") || "", greeted: false };

// The credential on API requests, where the gateway asks for one.
function authHeaders() { return state.token ? { Authorization: "Bearer " + state.token } : {}; }

// The page's language on every address it asks the gateway (the socket, the API), so the
// gateway's reasons (a refused name, a post too fast) come in the language the page shows,
// which the switch may have made other than the browser's.
function withLang(url) { return url + (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(i18n.lang); }

// The page's strings (charla-i18n's page-… messages), handed over by the gateway in the
// page's language; "{$name}" in one is filled in by t().
const i18n = { lang: "en", strings: {} };
function t(id, args = {}) {
  let text = i18n.strings[id] || id;
  for (const [k, v] of Object.entries(args)) text = text.split("{$" + k + "}").join(String(v));
  return text;
}

// Put the strings of `data` ({lang, strings}) into the page: text, placeholders, titles.
function applyStrings(data) {
  i18n.lang = data.lang;
  i18n.strings = data.strings;
  document.documentElement.lang = data.lang;
  $("lang").value = data.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-title]")) { el.title = t(el.dataset.i18nTitle); el.setAttribute("aria-label", el.title); }
  if (state.up !== undefined) showStatus();
}

// Another language, chosen on the page: its strings from the gateway, remembered.
async function switchLang(lang) {
  localStorage.setItem("charla.lang", lang);
  if (lang === i18n.lang) return;
  try {
    const r = await fetch("i18n.json?lang=" + encodeURIComponent(lang));
    if (r.ok) applyStrings(await r.json());
  } catch (_) { /* stays in the language it has */ }
  // The gateway's reasons for this page (a refused post, a close) in the new language too.
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ lang: i18n.lang }));
}

function params() {
  const p = new URLSearchParams(location.search);
  return { room: p.get("room") || localStorage.getItem("charla.room") || "general", name: p.get("name") || localStorage.getItem("charla.name") };
}

function line(cls, parts) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  for (const [c, t] of parts) {
    const span = document.createElement("span");
    span.className = c;
    span.textContent = t;
    li.appendChild(span);
  }
  return li;
}

function messageLine(m) {
  // A name the gateway verified (--auth jwt|proxy) gets a mark no name can contain.
  const who = m.verificado ? [["who", m.usuario], ["verified", "✓"], ["colon", ":"]] : [["who", m.usuario + ":"]];
  const li = line("message", [["time", m.hora || ""], ...who, ["text", m.mensaje]]);
  if (m.verificado) li.querySelector(".verified").title = t("page-verified");
  li.dataset.id = m.id;
  // A picture the gateway keeps (an upload, a worker's thumbnail): only its own names, which
  // it makes up, are ever put in an address.
  if (typeof m.file === "string" && SERVED_NAME.test(m.file)) {
    const img = document.createElement("img");
    img.className = "upload";
    img.src = "uploads/" + m.file;
    img.alt = m.mensaje;
    img.loading = "lazy";
    li.appendChild(img);
  }
  return li;
}

const SERVED_NAME = /^[0-9A-HJKMNP-TV-Z]{26}(\.thumb)?\.(jpg|png|gif|webp)$/;

// Sends a picture to the room; the worker's thumbnail comes back as a message of the room.
async function upload(file) {
  if (!file || !state.room || !state.name) return;
  if (state.maxUpload && file.size > state.maxUpload) {
    notice(t("page-upload-failed", { reason: file.size + " > " + state.maxUpload + " bytes" }), "error");
    return;
  }
  notice(t("page-uploading", { file: file.name }));
  const form = new FormData();
  form.append("usuario", state.name);
  form.append("file", file, file.name);
  try {
    const url = withLang("api/rooms/" + encodeURIComponent(state.room) + "/uploads");
    const r = await fetch(url, { method: "POST", body: form, headers: authHeaders() });
    if (!r.ok) {
      let reason = r.status + "";
      try { reason = (await r.json()).error || reason; } catch (_) { /* not JSON */ }
      notice(t("page-upload-failed", { reason }), "error");
    }
  } catch (e) {
    notice(t("page-upload-failed", { reason: String(e) }), "error");
  }
}

function atBottom() { const el = $("messages"); return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }
function scrollDown() { const el = $("messages"); el.scrollTop = el.scrollHeight; }

function addMessage(m) {
  if (state.seen.has(m.id)) return;
  state.seen.add(m.id);
  const stick = atBottom();
  $("messages").appendChild(messageLine(m));
  if (!state.oldest) state.oldest = m.id;
  if (stick) scrollDown();
}

function notice(text, cls = "notice") {
  const stick = atBottom();
  $("messages").appendChild(line(cls, [["", text]]));
  if (stick) scrollDown();
}

function renderOnline() {
  const ul = $("online");
  ul.replaceChildren();
  for (const n of [...state.online].sort()) {
    const li = document.createElement("li");
    li.textContent = n;
    if (state.verified.has(n)) {
      const mark = document.createElement("span");
      mark.className = "verified";
      mark.textContent = " ✓";
      li.appendChild(mark);
    }
    ul.appendChild(li);
  }
}

async function refreshRooms() {
  try {
    const r = await fetch(withLang("api/rooms"), { headers: authHeaders() });
    if (!r.ok) return;
    const { rooms } = await r.json();
    const ul = $("rooms");
    ul.replaceChildren();
    const names = new Set(rooms.map((x) => x.room));
    if (state.room && !names.has(state.room)) rooms.push({ room: state.room, online: 0 });
    for (const { room, online } of rooms.sort((a, b) => a.room.localeCompare(b.room))) {
      const li = document.createElement("li");
      li.textContent = room + " ";
      const c = document.createElement("span");
      c.className = "count";
      c.textContent = online ? "(" + online + ")" : "";
      li.appendChild(c);
      if (room === state.room) li.className = "current";
      li.addEventListener("click", () => join(room));
      ul.appendChild(li);
    }
  } catch (_) { /* the status line already says the gateway is away */ }
}

// The status line: a catalogue id (so a language switch redraws it) and, for the curious,
// the gateway's technical detail as the line's tooltip, never mixed into its words.
function setStatus(id, up, detail = "") {
  state.statusId = id;
  state.up = up;
  state.detail = detail;
  showStatus();
}
function showStatus() {
  const s = $("status");
  s.textContent = state.statusId ? t(state.statusId) : state.statusText || "";
  s.title = state.detail || "";
  s.classList.toggle("down", !state.up);
}
// A status line in words that are already the page's (a refusal's reason).
function setStatusText(text, up) { state.statusId = null; state.statusText = text; state.up = up; state.detail = ""; showStatus(); }

function connect() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  // Relative to the page, so the page works under a reverse proxy's path prefix too.
  const query = withLang("ws?room=" + encodeURIComponent(state.room) + "&name=" + encodeURIComponent(state.name) +
    (state.token ? "&token=" + encodeURIComponent(state.token) : ""));
  const address = new URL(query, location.href);
  address.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(address);
  state.greeted = false;
  state.ws = ws;
  ws.onopen = () => { state.retry = 500; };
  ws.onmessage = (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch (_) { return; }
    switch (f.type) {
      case "hello":
        state.greeted = true;
        // A proved name (a token's sub, the proxy's user) is the name, whatever was typed.
        if (f.verified && f.name !== state.name) { state.name = f.name; $("name").value = f.name; }
        if (f.unverified_names) notice(t("page-unverified"), "error");
        // Shown once the gateway says there is something older (see probeOlder).
        state.canOlder = !!f.history;
        $("older").hidden = true;
        $("search-box").hidden = !f.archive;
        state.maxUpload = f.uploads || 0;
        $("attach").hidden = !f.uploads;
        break;
      case "history":
        for (const m of f.messages) addMessage(m);
        state.oldest = f.messages.length ? f.messages[0].id : state.oldest;
        scrollDown();
        if (state.canOlder && f.messages.length) probeOlder();
        break;
      case "message": addMessage(f.message); break;
      case "online": state.online = new Set(f.names); state.verified = new Set(f.verified || []); renderOnline(); refreshRooms(); break;
      case "presence":
        if (f.verified) state.verified.add(f.name); else state.verified.delete(f.name);
        if (f.event === "join") { state.online.add(f.name); notice(t("page-joined", { name: f.name })); }
        else { state.online.delete(f.name); notice(t("page-left", { name: f.name })); }
        renderOnline();
        refreshRooms();
        break;
      case "status": setStatus(f.connected ? "page-connected" : "page-broker-away", f.connected, f.detail || ""); break;
      case "error": notice("⚠ " + f.error, "error"); break;
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    if (!state.greeted) { refused(query); return; }
    setStatus("page-disconnected", false, ev.reason || "");
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 5000);
  };
}

// The WebSocket closed before its hello: ask the same address with a plain GET, whose answer
// says why (a browser does not show a refused WebSocket's answer). Retry only when it was
// not a refusal: a wrong password, a taken name or a closed room would refuse again forever.
async function refused(query) {
  let status = 0, why = "";
  try {
    const r = await fetch(query, { headers: authHeaders() });
    status = r.status;
    why = (await r.text()).trim();
  } catch (_) { /* the gateway is away: retried below */ }
  if (status === 401) { askToken(why); return; }
  if (status === 400 || status === 403) {
    const said = t("page-refused", { reason: why });
    setStatusText(said, false);
    notice(said, "error");
    return;
  }
  // The gateway cannot take the page now (it serves its most rooms): say why, and try again.
  if (status === 503 && why) setStatusText(t("page-refused", { reason: why }), false);
  else setStatus("page-disconnected", false);
  setTimeout(connect, state.retry);
  state.retry = Math.min(state.retry * 2, 5000);
}

function askToken(why) {
  $("login-reason").textContent = why;
  $("login-token").value = "";
  $("login-dialog").showModal();
}

function join(room) {
  if (!/^[A-Za-z0-9._\-]{1,64}$/.test(room)) { notice(t("page-bad-room"), "error"); return; }
  state.room = room;
  state.online = new Set();
  state.seen = new Set();
  state.oldest = null;
  localStorage.setItem("charla.room", room);
  $("room-title").textContent = "#" + room;
  document.title = "charla · " + room;
  $("messages").replaceChildren();
  renderOnline();
  history.replaceState(null, "", "?room=" + encodeURIComponent(room));
  connect();
  refreshRooms();
}

function olderUrl(limit) {
  return withLang("api/rooms/" + encodeURIComponent(state.room) + "/messages?limit=" + limit + "&before=" + encodeURIComponent(state.oldest));
}

// "Older messages" only when there is one: ask for a single message before the oldest shown.
async function probeOlder() {
  const room = state.room;
  try {
    const r = await fetch(olderUrl(1), { headers: authHeaders() });
    if (!r.ok || room !== state.room) return;
    const { messages } = await r.json();
    $("older").hidden = !messages.length;
  } catch (_) { /* no button: nothing known to be older */ }
}

async function older() {
  if (!state.oldest) return;
  const r = await fetch(olderUrl(50), { headers: authHeaders() });
  if (!r.ok) { notice(t("page-no-older"), "error"); return; }
  const { messages } = await r.json();
  if (!messages.length) { $("older").hidden = true; return; }
  const list = $("messages");
  const first = list.firstChild;
  for (const m of messages) {
    if (state.seen.has(m.id)) continue;
    state.seen.add(m.id);
    list.insertBefore(messageLine(m), first);
  }
  state.oldest = messages[0].id;
  if (messages.length < 50) $("older").hidden = true;
}

async function search(q) {
  const list = $("results");
  list.replaceChildren();
  const r = await fetch(withLang("api/rooms/" + encodeURIComponent(state.room) + "/messages?limit=50&q=" + encodeURIComponent(q)), { headers: authHeaders() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { list.appendChild(line("error", [["", "⚠ " + (body.error || r.status)]])); return; }
  if (!body.messages.length) { list.appendChild(line("notice", [["", t("page-no-results")]])); return; }
  for (const m of body.messages) list.appendChild(messageLine(m));
}

// Why the gateway would refuse this name, in the page's words (it answers in its own).
function nameProblem(name) {
  const chars = [...name];
  if (chars.length < 1 || chars.length > 32) return t("page-name-length");
  const hidden = chars.find((c) => /[\p{Cc}\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF\u061C]/u.test(c));
  if (hidden) return t("page-name-hidden", { code: "U+" + hidden.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") });
  // The mark of a verified name, and towers of accents: the gateway's other name rules.
  if (/[\u2713\u2714\u2705\u2611\u{1F5F8}]/u.test(name)) return t("page-name-mark");
  if (/\p{M}{3,}/u.test(name.normalize("NFC"))) return t("page-name-marks");
  return "";
}

function start(name) {
  const problem = nameProblem(name);
  if (problem) { setStatusText(problem, false); notice(problem, "error"); return; }
  state.name = name;
  localStorage.setItem("charla.name", name);
  $("name").value = name;
  join(params().room);
}

window.addEventListener("DOMContentLoaded", () => {
  try { applyStrings(JSON.parse($("i18n").textContent)); } catch (_) { /* the HTML has its texts already */ }
  const remembered = localStorage.getItem("charla.lang");
  if (remembered && remembered !== i18n.lang) switchLang(remembered);
  $("lang").addEventListener("change", () => switchLang($("lang").value));
  // A narrow screen: the side panel (rooms, who is online) slides over the chat.
  $("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("side-open");
    $("menu").setAttribute("aria-expanded", String(open));
  });
  $("rooms").addEventListener("click", () => document.body.classList.remove("side-open"));
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    const name = $("name").value.trim();
    if (name && name !== state.name) { start(name); return; }
    if (!text.trim() || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    state.ws.send(JSON.stringify({ mensaje: text }));
    $("text").value = "";
  });
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => { upload($("file").files[0]); $("file").value = ""; });
  // A picture dropped anywhere on the chat is sent, where the gateway takes them.
  $("chat").addEventListener("dragover", (ev) => { if (state.maxUpload) ev.preventDefault(); });
  $("chat").addEventListener("drop", (ev) => {
    if (!state.maxUpload) return;
    ev.preventDefault();
    upload(ev.dataTransfer.files[0]);
  });
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const room = $("join-room").value.trim();
    if (room) { $("join-room").value = ""; join(room); }
  });
  $("older").addEventListener("click", older);
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (q) search(q);
  });
  $("login-form").addEventListener("submit", () => {
    state.token = $("login-token").value;
    sessionStorage.setItem("charla.token", state.token);
    connect();
  });
  setInterval(refreshRooms, 5000);
  const { name } = params();
  if (name) { start(name); return; }
  const dialog = $("name-dialog");
  $("name-form").addEventListener("submit", () => { const n = $("name-first").value.trim(); if (n) start(n); });
  dialog.showModal();
});
