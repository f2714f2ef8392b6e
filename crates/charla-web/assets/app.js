// charla's page. Everything users write is put into the page with textContent, never as
// HTML: a message or a name is shown exactly as typed and can never become markup or script.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { ws: null, room: null, name: null, online: new Set(), retry: 500, oldest: null, seen: new Set(),
  // The password or token (charla web --auth password|jwt): kept for this tab only.
  token: sessionStorage.getItem("charla.token") || "", greeted: false };

// The credential on API requests, where the gateway asks for one.
function authHeaders() { return state.token ? { Authorization: "Bearer " + state.token } : {}; }

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
  if (m.verificado) li.querySelector(".verified").title = "verificado";
  li.dataset.id = m.id;
  return li;
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
    ul.appendChild(li);
  }
}

async function refreshRooms() {
  try {
    const r = await fetch("/api/rooms", { headers: authHeaders() });
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

function setStatus(text, up) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("down", !up);
}

function connect() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const query = "/ws?room=" + encodeURIComponent(state.room) + "&name=" + encodeURIComponent(state.name) +
    (state.token ? "&token=" + encodeURIComponent(state.token) : "");
  const ws = new WebSocket(proto + "//" + location.host + query);
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
        if (f.unverified_names) notice("⚠ Los nombres no están verificados: cualquiera en la red puede usar un nombre que no esté en línea.", "error");
        $("older").hidden = !f.history;
        $("search-box").hidden = !f.archive;
        break;
      case "history":
        for (const m of f.messages) addMessage(m);
        state.oldest = f.messages.length ? f.messages[0].id : state.oldest;
        scrollDown();
        break;
      case "message": addMessage(f.message); break;
      case "online": state.online = new Set(f.names); renderOnline(); refreshRooms(); break;
      case "presence":
        if (f.event === "join") { state.online.add(f.name); notice("→ " + f.name + " entró"); }
        else { state.online.delete(f.name); notice("← " + f.name + " salió"); }
        renderOnline();
        refreshRooms();
        break;
      case "status": setStatus(f.connected ? "conectado" : "reconectando con el broker… (" + f.detail + ")", f.connected); break;
      case "error": notice("⚠ " + f.error, "error"); break;
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    if (!state.greeted) { refused(query); return; }
    setStatus("desconectado" + (ev.reason ? ": " + ev.reason : "") + "; reintentando…", false);
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
  if (status === 400 || status === 403) { setStatus("⚠ " + why, false); notice("⚠ " + why, "error"); return; }
  setStatus("desconectado; reintentando…", false);
  setTimeout(connect, state.retry);
  state.retry = Math.min(state.retry * 2, 5000);
}

function askToken(why) {
  $("login-reason").textContent = why;
  $("login-token").value = "";
  $("login-dialog").showModal();
}

function join(room) {
  if (!/^[A-Za-z0-9._\-]{1,64}$/.test(room)) { notice("⚠ sala no válida: usa letras, dígitos, '.', '_' o '-'", "error"); return; }
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

async function older() {
  if (!state.oldest) return;
  const r = await fetch("/api/rooms/" + encodeURIComponent(state.room) + "/messages?limit=50&before=" + encodeURIComponent(state.oldest), { headers: authHeaders() });
  if (!r.ok) { notice("⚠ no hay mensajes anteriores", "error"); return; }
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
}

async function search(q) {
  const list = $("results");
  list.replaceChildren();
  const r = await fetch("/api/rooms/" + encodeURIComponent(state.room) + "/messages?limit=50&q=" + encodeURIComponent(q), { headers: authHeaders() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { list.appendChild(line("error", [["", "⚠ " + (body.error || r.status)]])); return; }
  if (!body.messages.length) { list.appendChild(line("notice", [["", "sin resultados"]])); return; }
  for (const m of body.messages) list.appendChild(messageLine(m));
}

function start(name) {
  state.name = name;
  localStorage.setItem("charla.name", name);
  $("name").value = name;
  join(params().room);
}

window.addEventListener("DOMContentLoaded", () => {
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    const name = $("name").value.trim();
    if (name && name !== state.name) { start(name); return; }
    if (!text.trim() || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    state.ws.send(JSON.stringify({ mensaje: text }));
    $("text").value = "";
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
