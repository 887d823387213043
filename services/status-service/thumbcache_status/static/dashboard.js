// thumbcache dashboard: polls the status API and redraws. No build step, no dependencies.
// Every value from the API is set as text (file names are untrusted), never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.min(60000, Math.max(250, Number(params.get("refresh")) || 2000));
const GRID_PAGE = 200;
const state = { collection: null, cursor: null, failuresJob: null, tiles: new Map(), wasBusy: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The API token, when the service has one: from the fragment (/#token=..., which browsers never
// send to the server) or typed into the header's field; kept for this tab only.
const TOKEN_KEY = "thumbcache-token";
let token = takeToken();

function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    const rest = location.hash.replace(/(^#|&)token=[^&]*/, "$1").replace(/^#&/, "#");
    history.replaceState(null, "", location.pathname + location.search + (rest === "#" ? "" : rest));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askToken() {
  const box = document.getElementById("token-box");
  if (!box.hidden) return;
  box.hidden = false;
  document.getElementById("token-use").addEventListener("click", () => {
    token = document.getElementById("token").value.trim() || null;
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    box.hidden = true;
  });
}

async function api(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
  if (resp.status === 401) askToken();
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

// An <img> cannot send a header: with a token the image is fetched and shown from a blob.
function loadImage(img, url) {
  if (!token) { img.src = url; return; }
  fetch(url, { headers: authHeaders() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`${url}: ${r.status}`))))
    .then((blob) => {
      img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
      img.src = URL.createObjectURL(blob);
    })
    .catch((err) => console.warn(err));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function since(iso) {
  return iso ? `${duration((Date.now() - Date.parse(iso)) / 1000)} ago` : "";
}

function jobCard(job) {
  const done = job.completed + job.skipped + job.failed;
  const pct = job.total ? Math.min(100, (100 * done) / job.total) : 0;
  const ended = job.status === "done" || job.status === "failed";
  const bar = el("div", { class: "bar" + (ended ? ` ${job.status}` : ""),
                          "data-done": done, "data-total": job.total });
  bar.style.width = `${pct.toFixed(1)}%`;
  const rows = Object.entries(job.stages).map(([stage, c]) =>
    el("tr", {}, el("td", {}, stage), el("td", {}, c.total), el("td", {}, c.completed),
       el("td", {}, c.skipped), el("td", { class: c.failed ? "failed" : "" }, c.failed)));
  const current = job.current_items.map((it) =>
    el("li", {}, `${it.stage} · ${it.source} · ${it.worker || "?"} · ${since(it.since)}`));
  const card = el("div", { class: "card job", "data-job-id": job.job_id, "data-status": job.status },
    el("div", { class: "job-head" },
      el("span", { class: "job-id" }, job.job_id),
      el("span", { class: `status ${job.status}` }, job.status),
      el("span", { class: "muted" }, job.root || job.collection_id)),
    el("div", { class: "progress" }, bar),
    job.error ? el("div", { class: "job-error" }, `${job.error.class}: ${job.error.message}`) : null,
    el("div", { class: "stats" },
      el("span", { class: "count" }, el("b", {}, `${done}/${job.total}${job.scan_complete ? "" : "+"}`), " images"),
      el("span", { class: "rate" }, el("b", {}, job.rate_per_s === null ? "–" : job.rate_per_s.toFixed(1)), " /s"),
      el("span", { class: "eta" }, "ETA ", el("b", {}, ended ? job.status : duration(job.eta_s))),
      el("span", {}, "failed ", el("b", {}, job.failed)),
      job.idle_s !== null && job.idle_s > 60 ? el("span", { class: "failed" }, `no progress for ${duration(job.idle_s)}`) : null),
    el("table", {},
      el("tr", {}, ...["stage", "total", "completed", "skipped", "failed"].map((h) => el("th", {}, h))),
      ...rows),
    current.length ? el("ul", { class: "current" }, ...current) : null);
  card.addEventListener("click", () => { state.failuresJob = job.job_id; refreshFailures(); });
  return card;
}

async function refreshJobs() {
  const page = await api("/v1/jobs?limit=20");
  const jobs = page.items;
  const box = document.getElementById("jobs");
  box.replaceChildren(...(jobs.length ? jobs.map(jobCard) : [el("p", { class: "muted" }, "No jobs yet.")]));
  if (!state.failuresJob) {
    const failing = jobs.find((j) => j.failed > 0);
    if (failing) state.failuresJob = failing.job_id;
  }
  return jobs;
}

async function refreshFailures() {
  const box = document.getElementById("failures");
  if (!state.failuresJob) return;
  document.getElementById("failures-job").textContent = `job ${state.failuresJob}`;
  const page = await api(`/v1/jobs/${encodeURIComponent(state.failuresJob)}/failures?limit=1000`);
  const groups = new Map();
  for (const f of page.items) {
    if (!groups.has(f.error_class)) groups.set(f.error_class, []);
    groups.get(f.error_class).push(f);
  }
  const sorted = [...groups.entries()].sort((a, b) => b[1].length - a[1].length);
  box.replaceChildren(...(sorted.length ? sorted.map(([reason, items]) =>
    el("div", { class: "reason", "data-reason": reason },
      el("span", { class: "count" }, items.length), el("b", {}, reason),
      el("ul", {}, ...items.slice(0, 5).map((f) => el("li", {}, `${f.source} (${f.stage}): ${f.message}`)),
        items.length > 5 ? el("li", { class: "muted" }, `… ${items.length - 5} more`) : null)))
    : [el("p", { class: "muted" }, "No failures.")]));
}

async function refreshFolders() {
  const { items } = await api("/v1/cache-folders");
  const box = document.getElementById("folders");
  box.replaceChildren(...(items.length ? items.map((f) => {
    const ratio = f.fill_ratio === null ? 0 : Math.min(1, f.fill_ratio);
    const bar = el("div", { class: "bar" + (f.high_water !== null && ratio >= f.high_water ? " full" : "") });
    bar.style.width = `${(100 * ratio).toFixed(1)}%`;
    return el("div", { class: "card folder", "data-folder-id": f.folder_id },
      el("div", {}, el("b", {}, f.path)),
      el("div", { class: "progress" }, bar),
      el("div", { class: "stats" },
        el("span", {}, el("b", {}, bytes(f.bytes)), f.capacity_bytes ? ` of ${bytes(f.capacity_bytes)}` : " (no capacity set)"),
        el("span", {}, el("b", {}, f.files), " files"),
        el("span", {}, el("b", {}, f.collections), " collections")));
  }) : [el("p", { class: "muted" }, "No cache folders yet.")]));
}

async function refreshAlerts() {
  const { items } = await api("/v1/alerts?limit=20");
  const open = items.filter((a) => !a.acknowledged);
  document.getElementById("alerts-section").hidden = open.length === 0;
  document.getElementById("alerts").replaceChildren(...open.map((a) =>
    el("li", {}, `${a.kind}: ${a.message} (job ${a.job_id}, ${since(a.raised_at)})`)));
}

async function refreshCollections() {
  const { items } = await api("/v1/collections?limit=100");
  const nav = document.getElementById("collections");
  nav.replaceChildren(...items.map((c) => {
    const b = el("button", { type: "button", class: c.collection_id === state.collection ? "active" : "",
                             "data-collection-id": c.collection_id }, c.name || c.collection_id);
    b.addEventListener("click", () => { location.hash = `collection=${c.collection_id}`; });
    return b;
  }));
  if (!state.collection && items.length) selectCollection(items[0].collection_id);
}

// The smallest rendition an image has (renditions are configuration: "thumbnail" by default).
function gridRendition(image) {
  let best = null;
  for (const [name, record] of Object.entries(image)) {
    if (record && typeof record === "object" && "path" in record && "width" in record &&
        (best === null || record.width < image[best].width)) best = name;
  }
  return best;
}

function tile(image) {
  const caption = el("span", { title: image.source }, image.source);
  const rendition = gridRendition(image);
  let visual;
  if (rendition) {
    visual = el("img", { class: "thumb", alt: image.source, loading: "lazy" });
    loadImage(visual, `/v1/images/${image.image_id}/${rendition}`);
  } else {
    visual = el("div", { class: "missing" + (image.error ? " failed" : "") }, image.error ? "failed" : "…");
    if (image.error) visual.title = image.error;
  }
  return el("div", { class: "tile", "data-image-id": image.image_id }, visual, caption);
}

async function loadGrid(first) {
  // first: (re)load the first page, updating tiles in place; else append the next page.
  if (!state.collection) return;
  const id = state.collection;
  let url = `/v1/collections/${id}/images?limit=${GRID_PAGE}`;
  if (!first && state.cursor) url += `&cursor=${encodeURIComponent(state.cursor)}`;
  const page = await api(url);
  if (id !== state.collection) return;
  const grid = document.getElementById("grid");
  for (const image of page.items) {
    const kind = gridRendition(image) ? "thumb" : image.error ? "failed" : "pending";
    const old = state.tiles.get(image.image_id);
    if (old && old.dataset.kind === kind) continue;
    const fresh = tile(image);
    fresh.dataset.kind = kind;
    if (old) old.replaceWith(fresh); else grid.append(fresh);
    state.tiles.set(image.image_id, fresh);
  }
  if (!first || !state.cursor) state.cursor = page.next_cursor;
  document.getElementById("more").hidden = !state.cursor;
}

function selectCollection(id) {
  if (id === state.collection) return;
  state.collection = id;
  state.cursor = null;
  state.tiles = new Map();
  document.getElementById("grid").replaceChildren();
  document.getElementById("collection-title").textContent = `collection ${id}`;
  for (const b of document.querySelectorAll("#collections button")) {
    b.classList.toggle("active", b.dataset.collectionId === id);
  }
  loadGrid(true).catch(showError);
}

function fromHash() {
  const m = /collection=([0-9a-f]{16})/.exec(location.hash);
  if (m) selectCollection(m[1]);
}

function showError(err) {
  const conn = document.getElementById("conn");
  conn.textContent = "disconnected";
  conn.className = "pill bad";
  console.warn(err);
}

async function tick() {
  try {
    const jobs = await refreshJobs();
    await Promise.all([refreshFailures(), refreshFolders(), refreshAlerts(), refreshCollections()]);
    const busy = jobs.some((j) => !["done", "failed"].includes(j.status) && j.collection_id === state.collection);
    // One more load after the job ends picks up its last thumbnails.
    if (busy || state.wasBusy || state.tiles.size === 0) await loadGrid(true);
    state.wasBusy = busy;
    const conn = document.getElementById("conn");
    conn.textContent = "live";
    conn.className = "pill ok";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    showError(err);
  } finally {
    setTimeout(tick, REFRESH_MS);
  }
}

window.addEventListener("hashchange", fromHash);
document.getElementById("more").addEventListener("click", () => loadGrid(false).catch(showError));
fromHash();
tick();
