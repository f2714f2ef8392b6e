#!/usr/bin/env bash
# Remakes the README's pictures: docs/img/web.png (the page in headless Chromium) and
# docs/img/chat.png (the terminal chat in tmux, its screen rendered as HTML and photographed
# by the same browser). A private `charla serve` and gateway; a short scripted conversation.
# Needs what the tests need (tmux, Debian's chromium, compat/web's playwright-core) and
# `pip install ansi2html`; emoji show with Debian's fonts-noto-color-emoji.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p charla
charla=$PWD/target/release/charla
work=$(mktemp -d -t charla-shots-XXXXXX)
sock=charla-shots-$$
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
pids=(); trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
export CHARLA_NO_AUTOSTART=1 HOME=$work XDG_CONFIG_HOME=$work
bport=$(free_port); wport=$(free_port)
"$charla" serve --port "$bport" >"$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do up "$bport" && break; sleep 0.05; done
broker=redis://127.0.0.1:$bport
"$charla" web --broker "$broker" --listen "127.0.0.1:$wport" >"$work/web.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do up "$wport" && break; sleep 0.05; done
post() { curl -s -o /dev/null -H 'content-type: application/json' \
  -d "{\"usuario\":\"$2\",\"mensaje\":\"$3\"}" "http://127.0.0.1:$wport/api/rooms/$1/messages"; sleep 0.2; }
post general Ana "¡Hola a todos! ¿Quién viene al taller del jueves?"
post general Beto "Yo voy 🙋 ¿Llevo la Raspberry?"
post general Ana "Sí, y el cable de red: probamos charla entre las dos computadoras"
post general Carla "Yo llego tarde, leo el historial al entrar 😉"
post desarrollo Beto "El broker es charla serve en el puerto 6380"

# The terminal chat, as Juan, who joins after the conversation started.
tmux -L "$sock" new-session -d -x 100 -y 24 \
  "exec env HOME=$work LANG=C.UTF-8 TERM=xterm-256color $charla chat --broker $broker --name Juan --room general"
sleep 2
tmux -L "$sock" send-keys -l "¡Hola! Yo también voy 🚀"; tmux -L "$sock" send-keys Enter
sleep 1
tmux -L "$sock" capture-pane -e -p > "$work/chat.ansi"
python3 - "$work/chat.ansi" "$work/chat.html" <<'PY'
import sys
from ansi2html import Ansi2HTMLConverter
text = open(sys.argv[1], encoding="utf-8").read()
html = Ansi2HTMLConverter(dark_bg=True, font_size="15px", title="charla chat").convert(text)
html = html.replace("</style>", "pre, .ansi2html-content { font-family: 'DejaVu Sans Mono', monospace; line-height: 1.15; margin: 0; padding: 8px; }</style>")
open(sys.argv[2], "w", encoding="utf-8").write(html)
PY
# The page, as María, in the same room (Juan is online beside her).
cat > "$work/shoot.mjs" <<JS
import { chromium } from "playwright-core";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
const term = await browser.newPage({ viewport: { width: 920, height: 470 } });
await term.goto("file://$work/chat.html");
await term.screenshot({ path: "$PWD/docs/img/chat.png" });
// A Spanish-speaking browser: the page follows Accept-Language (the workshop is in Spanish).
const page = await browser.newPage({ viewport: { width: 1000, height: 560 }, locale: "es-ES" });
await page.goto("http://127.0.0.1:$wport/?room=general&name=Mar%C3%ADa");
await page.locator("#online li", { hasText: "Juan" }).waitFor({ timeout: 15000 });
await page.fill("#text", "¡Qué bien! Nos vemos el jueves 👋");
await page.press("#text", "Enter");
await page.locator("#messages li .text", { hasText: "Nos vemos el jueves" }).waitFor();
await page.screenshot({ path: "$PWD/docs/img/web.png" });
await browser.close();
JS
cp "$work/shoot.mjs" compat/web/.shoot.mjs
(cd compat/web && node .shoot.mjs); rm -f compat/web/.shoot.mjs
echo "docs/img/web.png and docs/img/chat.png written"
