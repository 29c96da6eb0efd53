// livesku moderator dashboard: a snapshot from /api/board, then live updates from /api/events (SSE).
// Kept cheap for 50+ streams: DOM writes are batched per animation frame, keyframe images are fetched
// only for tiles on screen and at most once per second each, and the timeline is capped.
"use strict";

// Off loopback the API wants a token for reads: open the page as /#token=... The fragment never leaves
// the browser; it becomes a same-site cookie (EventSource and <img> cannot send headers) and is removed
// from the address bar.
(() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    document.cookie = `livesku_token=${m[1]}; path=/; SameSite=Strict`;
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

const TIMELINE_MAX = 150;
const FRAME_MIN_MS = 1000;
const tiles = new Map(); // stream id -> { el, state, latestSeq, shownSeq, lastFetch, visible, products: Map }
const grid = document.getElementById("grid");
const timeline = document.getElementById("timeline");
const tpl = document.getElementById("tile");
let dirty = new Set();
let scheduled = false;

const visibility = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const t = tiles.get(e.target.dataset.stream);
    if (t) { t.visible = e.isIntersecting; if (t.visible) markDirty(t.id); }
  }
}, { rootMargin: "200px" });

function markDirty(id) {
  dirty.add(id);
  if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
}

function flush() {
  scheduled = false;
  const now = Date.now();
  for (const id of dirty) {
    const t = tiles.get(id);
    if (!t) continue;
    renderTile(t, now);
  }
  dirty = new Set([...dirty].filter((id) => { const t = tiles.get(id); return t && t.pendingFrame; }));
  if (dirty.size) setTimeout(() => { if (!scheduled) { scheduled = true; requestAnimationFrame(flush); } }, 250);
}

function ensureTile(id) {
  let t = tiles.get(id);
  if (t) return t;
  const el = tpl.content.firstElementChild.cloneNode(true);
  el.dataset.stream = id;
  el.querySelector(".id").textContent = id;
  el.querySelector(".id").title = id;
  t = { id, el, state: "", rate: 0, latestSeq: null, shownSeq: null, lastFetch: 0, latestMs: 0, visible: false,
        products: new Map(), productsDirty: true, asr: "", pendingFrame: false };
  tiles.set(id, t);
  grid.appendChild(el);
  visibility.observe(el);
  applyFilter(t);
  return t;
}

function removeTile(id) {
  const t = tiles.get(id);
  if (!t) return;
  visibility.unobserve(t.el);
  t.el.remove();
  tiles.delete(id);
}

function renderTile(t, now) {
  const el = t.el;
  const st = el.querySelector(".state");
  if (st.textContent !== t.state) { st.textContent = t.state; st.className = "state " + t.state; }
  el.querySelector(".rate").textContent = t.rate ? t.rate.toFixed(1) + " kf/s" : "";
  el.querySelector(".asr").textContent = t.asr || "";
  if (t.latestMs) el.querySelector(".age").textContent = Math.max(0, Math.round((now - t.latestMs) / 1000)) + " s ago";
  t.pendingFrame = t.latestSeq !== null && t.latestSeq !== t.shownSeq;
  if (t.pendingFrame && t.visible && now - t.lastFetch >= FRAME_MIN_MS) {
    t.lastFetch = now;
    t.shownSeq = t.latestSeq;
    t.pendingFrame = false;
    el.querySelector(".frame img").src = "/streams/" + encodeURIComponent(t.id) + "/frame.jpg?seq=" + t.latestSeq;
  }
  if (t.productsDirty) {
    t.productsDirty = false;
    const ul = el.querySelector(".products");
    ul.replaceChildren();
    if (!t.products.size) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "no product on screen";
      ul.appendChild(li);
    }
    for (const p of t.products.values()) {
      const li = document.createElement("li");
      li.dataset.product = p.product_id;
      if (p.image_url) {
        const img = document.createElement("img");
        img.src = p.image_url; img.alt = ""; img.loading = "lazy";
        li.appendChild(img);
      } else {
        const ph = document.createElement("span");
        ph.className = "ph";
        ph.textContent = (p.title || p.product_id).slice(0, 1).toUpperCase();
        li.appendChild(ph);
      }
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = p.title || p.product_id;
      title.title = p.product_id;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = Number(p.score).toFixed(2);
      li.append(title, score);
      ul.appendChild(li);
    }
  }
}

function addTimeline(ev, prepend = true) {
  const li = document.createElement("li");
  li.dataset.eventId = ev.event_id;
  const kind = ev.type.replace("product.", "");
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date(ev.emitted_at || Date.now()).toLocaleTimeString();
  const what = document.createElement("span");
  what.className = kind;
  what.textContent = `${ev.stream_id}: ${kind} ${ev.title || ev.product_id} (${Number(ev.score).toFixed(2)})`;
  li.append(t, what);
  if (prepend) timeline.prepend(li); else timeline.appendChild(li);
  while (timeline.childElementCount > TIMELINE_MAX) timeline.lastElementChild.remove();
}

function onEvent(ev, imageUrl) {
  const t = tiles.get(ev.stream_id);
  if (t) {
    if (ev.type === "product.disappeared") t.products.delete(ev.product_id);
    else t.products.set(ev.product_id, { product_id: ev.product_id, title: ev.title, score: ev.score, image_url: imageUrl });
    t.productsDirty = true;
    markDirty(t.id);
  }
  addTimeline(ev);
}

// In a worker group this page shows one worker's streams: the summary says which.
let scope = "";

async function loadBoard() {
  const r = await fetch("/api/board", { cache: "no-store" });
  if (!r.ok) throw new Error("board: HTTP " + r.status);
  const board = await r.json();
  const seen = new Set();
  for (const s of board.streams) {
    seen.add(s.id);
    const t = ensureTile(s.id);
    t.state = s.state;
    const b = s.board || {};
    t.rate = b.keyframes_per_sec || 0;
    t.asr = b.asr_text || "";
    if (b.latest_seq !== null && b.latest_seq !== undefined) { t.latestSeq = b.latest_seq; t.latestMs = b.latest_unix_ms; }
    t.products = new Map((b.on_screen || []).map((p) => [p.product_id, p]));
    t.productsDirty = true;
    markDirty(s.id);
  }
  for (const id of [...tiles.keys()]) if (!seen.has(id)) removeTile(id);
  timeline.replaceChildren();
  for (const e of board.events.slice().reverse()) addTimeline(e.event, false);
  scope = board.group ? ` · worker ${board.worker} only (one worker of group ${board.group})` : "";
  document.getElementById("summary").textContent = `${board.streams.length} streams${scope}`;
}

// States and rates change slowly: refresh them from /streams every few seconds.
async function refreshStates() {
  try {
    const r = await fetch("/streams", { cache: "no-store" });
    if (!r.ok) return;
    const { streams } = await r.json();
    let running = 0;
    for (const s of streams) {
      const t = tiles.get(s.id);
      if (!t) continue;
      if (s.state === "running") running++;
      if (t.state !== s.state || t.rate !== s.keyframes_per_sec) { t.state = s.state; t.rate = s.keyframes_per_sec; markDirty(s.id); }
    }
    document.getElementById("summary").textContent = `${streams.length} streams, ${running} running${scope}`;
  } catch (_) { /* offline: the connection badge says so */ }
}

let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadBoard().catch(console.error), 300);
}

function connect() {
  const es = new EventSource("/api/events");
  const conn = document.getElementById("conn");
  es.onopen = () => { conn.textContent = "live"; conn.className = "conn on"; reloadSoon(); };
  es.onerror = () => { conn.textContent = "reconnecting"; conn.className = "conn off"; };
  es.addEventListener("resync", reloadSoon);
  es.onmessage = (m) => {
    let u;
    try { u = JSON.parse(m.data); } catch (_) { return; }
    switch (u.type) {
      case "frame": {
        const t = tiles.get(u.stream_id);
        if (t) { t.latestSeq = u.seq; t.latestMs = u.unix_ms; markDirty(t.id); } else reloadSoon();
        break;
      }
      case "event": onEvent(u.event, u.image_url); break;
      case "asr": { const t = tiles.get(u.stream_id); if (t) { t.asr = u.text; markDirty(t.id); } break; }
      case "streams": reloadSoon(); break;
    }
  };
}

function applyFilter(t) {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  t.el.classList.toggle("hidden", q !== "" && !t.id.toLowerCase().includes(q));
}
document.getElementById("filter").addEventListener("input", () => tiles.forEach(applyFilter));

loadBoard().catch(console.error).finally(connect);
setInterval(refreshStates, 3000);
setInterval(() => tiles.forEach((t) => { if (t.visible && t.latestMs) markDirty(t.id); }), 1000);
