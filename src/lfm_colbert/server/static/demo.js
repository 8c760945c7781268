// The demo page: search box, filters, results with the matched words highlighted (from `explain`).
// No build step and no dependencies. Text from the server is only ever set as textContent.
"use strict";

const $ = (sel) => document.querySelector(sel);
const POSITIONAL = new Set(["line", "passage", "start", "end"]);
const state = { filters: {}, authRequired: false };

// -- language hint ---------------------------------------------------------------------------------
// A guess from the script, then from common words and letters: enough to label the 12 languages of
// the model's training (en es de fr it pt ar sv no ja ko zh). Documents' own `lang` metadata wins.
const WORDS = {
  en: "the and of to in is are where what how do does why which who with for on from this that",
  es: "el la los las de que y en es del por cómo dónde qué cuál para con una un se su al",
  de: "der die das und ist nicht ein eine wie wo mit sich auf für den dem des man zu",
  fr: "le la les des et est une du sur dans où comment pour pas qui que au aux ce sont",
  it: "il lo gli della che è per una dove come sono di del con non nel alla le",
  pt: "o os as do da dos das que não em uma é onde como para com um se no na",
  sv: "och är att det som en på för med var hur inte av till den de ett om",
  no: "og er å det som en på for med hvor hvordan ikke av til den de et om",
};
const WORDSETS = Object.fromEntries(Object.entries(WORDS).map(([k, v]) => [k, new Set(v.split(" "))]));
const LETTERS = [[/[ñ¿¡]/g, { es: 3 }], [/ß/g, { de: 3 }], [/[äöü]/g, { de: 1, sv: 0.6 }], [/å/g, { sv: 1, no: 1 }],
  [/[æø]/g, { no: 3 }], [/[ãõ]/g, { pt: 3 }], [/ç/g, { fr: 1, pt: 1 }], [/[èêëœ]/g, { fr: 1.5 }], [/[ìò]/g, { it: 1.5 }]];

function guessLang(text) {
  const count = (re) => (text.match(re) || []).length;
  const kana = count(/[\u3040-\u30ff]/g), hangul = count(/[\uac00-\ud7af\u1100-\u11ff]/g);
  const han = count(/[\u4e00-\u9fff\u3400-\u4dbf]/g), arabic = count(/[\u0600-\u06ff\u0750-\u077f]/g);
  if (kana) return "ja";
  if (hangul) return "ko";
  if (han) return "zh";
  if (arabic) return "ar";
  const scores = {};
  for (const word of text.toLowerCase().split(/[^\p{L}]+/u)) {
    for (const [lang, set] of Object.entries(WORDSETS)) if (set.has(word)) scores[lang] = (scores[lang] || 0) + 1;
  }
  for (const [re, weights] of LETTERS) {
    const n = count(re);
    if (n) for (const [lang, w] of Object.entries(weights)) scores[lang] = (scores[lang] || 0) + n * w;
  }
  const best = Object.entries(scores).sort((a, b) => b[1] - a[1])[0];
  return best && best[1] > 0 ? best[0] : "";
}

const LANG_NAMES = (() => { try { return new Intl.DisplayNames(["en"], { type: "language" }); } catch { return null; } })();
const langName = (code) => (code && LANG_NAMES ? LANG_NAMES.of(code) : code) || "";

// -- talking to the API ----------------------------------------------------------------------------
async function api(path, body) {
  const headers = { "content-type": "application/json" };
  const key = sessionStorage.getItem("lfm-colbert-key");
  if (key) headers.authorization = "Bearer " + key;
  const res = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch { /* an empty or non-JSON body */ }
  if (!res.ok) {
    if (res.status === 401) { $("#key-row").hidden = false; }
    throw new Error((data && data.detail) || `${res.status} ${res.statusText}`);
  }
  return data;
}

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// -- filters ----------------------------------------------------------------------------------------
function parseValues(raw) {
  // "en,de" -> ["en", "de"]; numbers and booleans also match as such (as the CLI's --filter does).
  const out = [];
  for (const v of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    out.push(v);
    if (/^-?\d+(\.\d+)?$/.test(v)) out.push(Number(v));
    else if (v === "true" || v === "false") out.push(v === "true");
  }
  return out;
}

function addFilter(key, values) {
  if (!key || !values.length) return;
  const have = state.filters[key] || [];
  state.filters[key] = [...have, ...values.filter((v) => !have.includes(v))];
  renderFilters();
  search();
}

function renderFilters() {
  const ul = $("#active-filters");
  ul.replaceChildren();
  for (const [key, values] of Object.entries(state.filters)) {
    const li = document.createElement("li");
    li.className = "filter";
    li.dataset.key = key;
    const shown = [...new Set(values.map(String))].join(" or ");
    li.append(`${key} = ${shown}`);
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = `remove the ${key} filter`;
    x.addEventListener("click", () => { delete state.filters[key]; renderFilters(); search(); });
    li.append(x);
    ul.append(li);
  }
}

// -- results ----------------------------------------------------------------------------------------
function highlighted(text, explanation) {
  // Document spans matched by query tokens, weighted by what they add; offsets are code points.
  const frag = document.createDocumentFragment();
  const chars = Array.from(text);
  if (!explanation) { frag.append(text); return frag; }
  const spans = new Map();
  for (const m of explanation.matches) {
    // The words the query's own tokens matched; expansion tokens are in "why this result".
    if (!m.doc_span || m.kind !== "text") continue;
    const key = m.doc_span.join(":");
    const s = spans.get(key) || { start: m.doc_span[0], end: m.doc_span[1], score: 0, by: [] };
    s.score += m.score;
    s.by.push(m.query_token);
    spans.set(key, s);
  }
  const list = [...spans.values()].sort((a, b) => a.start - b.start || b.end - a.end);
  const top = Math.max(1e-6, ...list.map((s) => s.score));
  let at = 0;
  for (const s of list) {
    if (s.start < at) continue; // overlaps the previous one
    frag.append(chars.slice(at, s.start).join(""));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(s.start, s.end).join("");
    mark.style.setProperty("--w", (s.score / top).toFixed(3));
    mark.title = `matched by ${[...new Set(s.by)].join(", ")} (+${s.score.toFixed(3)})`;
    frag.append(mark);
    at = s.end;
  }
  frag.append(chars.slice(at).join(""));
  return frag;
}

function matchTable(explanation) {
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "why this result";
  const table = document.createElement("table");
  table.className = "matches";
  const head = table.insertRow();
  for (const h of ["query token", "matched in the document", "adds"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  const rows = explanation.matches.filter((m) => m.kind === "text").sort((a, b) => b.score - a.score);
  for (const m of rows) {
    const tr = table.insertRow();
    const cells = [m.query_token, m.doc_text === null ? "(start of document)" : m.doc_text, m.score.toFixed(3)];
    cells.forEach((c, i) => { const td = tr.insertCell(); td.textContent = c; td.dir = "auto"; if (i === 2) td.className = "num"; });
  }
  const rest = explanation.matches.filter((m) => m.kind !== "text").reduce((a, m) => a + m.score, 0);
  const tr = table.insertRow();
  const td = tr.insertCell();
  td.colSpan = 2;
  td.textContent = "query expansion and special tokens";
  const n = tr.insertCell();
  n.className = "num";
  n.textContent = rest.toFixed(3);
  details.append(summary, table);
  return details;
}

function renderHits(hits) {
  const ol = $("#results");
  ol.replaceChildren();
  for (const hit of hits) {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.id = hit.id;
    const head = document.createElement("div");
    head.className = "head";
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = hit.id;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    const lang = typeof hit.metadata.lang === "string" ? hit.metadata.lang : guessLang(hit.text || "");
    const hint = document.createElement("span");
    hint.className = "lang-hint";
    hint.textContent = lang ? langName(lang) + (typeof hit.metadata.lang === "string" ? "" : " (guess)") : "";
    const meta = document.createElement("span");
    meta.className = "meta";
    for (const [key, value] of Object.entries(hit.metadata)) {
      // Passage positions that `lfm-colbert index` records are no use as filters.
      if (value === null || typeof value === "object" || POSITIONAL.has(key)) continue;
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.dataset.key = key;
      chip.textContent = `${key}: ${value}`;
      chip.title = `show only documents with ${key} = ${value}`;
      chip.addEventListener("click", () => addFilter(key, [value]));
      meta.append(chip);
    }
    head.append(id, score, hint, meta);
    const text = document.createElement("p");
    text.className = "text";
    text.dir = "auto";
    if (lang) text.lang = lang;
    text.append(highlighted(hit.text || "", hit.explanation));
    li.append(head, text);
    if (hit.explanation) li.append(matchTable(hit.explanation));
    ol.append(li);
  }
}

let pending = 0;
async function search() {
  const query = $("#q").value.trim();
  if (!query) return;
  const body = { query, k: Number($("#k").value), explain: true };
  if ($("#mode").value !== "semantic") body.mode = $("#mode").value;
  if (Object.keys(state.filters).length) body.filter = state.filters;
  const mine = ++pending;
  setStatus("searching…");
  $("#results").setAttribute("aria-busy", "true");
  const t0 = performance.now();
  try {
    const data = await api("/search", body);
    if (mine !== pending) return; // a newer search is on its way
    renderHits(data.hits);
    const ms = Math.round(performance.now() - t0);
    setStatus(`${data.hits.length} result${data.hits.length === 1 ? "" : "s"} for “${query}” in ${ms} ms`);
    const url = new URL(location.href);
    url.searchParams.set("q", query);
    history.replaceState(null, "", url);
  } catch (err) {
    if (mine === pending) { setStatus(err.message, true); $("#results").replaceChildren(); }
  } finally {
    if (mine === pending) $("#results").removeAttribute("aria-busy");
  }
}

async function init() {
  const q = $("#q");
  q.addEventListener("input", () => {
    const lang = guessLang(q.value);
    $("#q-lang").textContent = lang ? langName(lang) : "";
  });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("#k").addEventListener("change", search);
  $("#mode").addEventListener("change", search);
  $("#add-filter").addEventListener("click", () => {
    addFilter($("#filter-key").value, parseValues($("#filter-value").value));
    $("#filter-value").value = "";
  });
  $("#filter-value").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("#add-filter").click(); } });
  $("#key-row").addEventListener("submit", (e) => e.preventDefault());
  $("#api-key").addEventListener("change", (e) => { sessionStorage.setItem("lfm-colbert-key", e.target.value); loadInfo(); });
  try {
    const res = await fetch("/health");
    const health = await res.json();
    state.authRequired = health.auth_required;
    $("#key-row").hidden = !health.auth_required || !!sessionStorage.getItem("lfm-colbert-key");
    if (!health.ready) setStatus(health.status === "loading" ? "the model is loading…" : `server ${health.status}`, health.status === "failed");
    if (!health.has_index) setStatus("this server has no index: only /rerank and /encode work", true);
  } catch (err) {
    setStatus("cannot reach the server: " + err.message, true);
  }
  await loadInfo();
  const initial = new URL(location.href).searchParams.get("q");
  if (initial) { q.value = initial; q.dispatchEvent(new Event("input")); search(); }
}

async function loadInfo() {
  try {
    const info = await api("/info");
    const docs = info.index ? info.index.documents : 0;
    const id = info.model.model_id || "model";
    const name = /^[./]|^[A-Za-z]:\\/.test(id) ? id.split(/[\\/]/).filter(Boolean).pop() : id; // a local path: its last part
    $("#about").textContent = `${docs.toLocaleString("en")} documents · ${name} (${info.model.variant}, ${info.model.dtype})`;
    const select = $("#filter-key");
    select.replaceChildren();
    const keys = Object.keys(info.metadata_keys).sort((a, b) => (a === "lang" ? -1 : b === "lang" ? 1 : a.localeCompare(b)));
    for (const key of keys) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = key;
      select.append(opt);
    }
    $("#filters").hidden = keys.length === 0;
  } catch (err) {
    if (!state.authRequired) setStatus(err.message, true);
  }
}

init();
