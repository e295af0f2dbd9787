// authtrail viewer. Reads the admin API with the bearer token kept in sessionStorage.
// Every value from the API reaches the page through textContent or a text node: never innerHTML.
"use strict";

(function () {
  const TOKEN_KEY = "authtrail.token";
  // Kept in localStorage, per browser: saved views (filters, exclusions, window, toggles) and the
  // hidden columns. Never the token, which stays in this tab's sessionStorage.
  const VIEWS_KEY = "authtrail.views";
  const COLUMNS_KEY = "authtrail.columns.hidden";
  const MAX_VIEWS = 50;
  const COLUMNS = [["time", "Time"], ["type", "Type"], ["outcome", "Outcome"], ["app", "App"], ["actor", "Actor"],
    ["target", "Target"], ["reason", "Reason"], ["status", "Status"], ["ip", "IP"]];
  const TYPES = ["auth.*", "auth.login", "auth.logout", "auth.mfa.challenge", "auth.mfa.verify",
    "token.*", "token.issue", "token.refresh", "token.revoke", "token.verify", "token.invalid",
    "password.*", "password.reset.request", "password.reset.complete", "password.change",
    "email.verify.request", "email.verify.complete", "account.*", "account.register",
    "account.update", "account.deactivate", "account.reactivate", "account.delete", "account.lock",
    "provider.*", "app.settings.update", "app.key.rotate", "admin.role.grant", "admin.role.revoke",
    "support.impersonate", "support.action", "access.denied", "access.would_deny", "audit.*"];
  const PAGE_SIZE = 50;
  const TAIL_LIMIT = 200;
  const TAIL_EVERY_MS = 2000;
  const MAX_ROWS = 500;
  const OUTCOMES = ["success", "failure", "error", "unknown"];
  // Exclusions the API takes (comma-separated values each), by the filter they negate.
  const EXCLUDABLE = ["type", "app", "actor", "target", "route", "request_id", "ip", "reason"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const state = {
    cursors: [], next: null, events: [], selected: null, kbd: -1,
    excludes: {}, showAudit: false, utc: false,
    gen: 0, tail: null, live: false, paused: false, pending: [], seen: new Set(),
    polling: false, timer: null, statsAt: 0, statsGen: 0, window: null, rendered: false,
  };

  // Build an element; string/number children become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "title") e.title = String(v);
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status === 401) { signOut("That token was not accepted."); throw new Error("unauthorized"); }
    if (!resp.ok) throw new Error((body && body.message) || ("HTTP " + resp.status));
    return body;
  }
  function report(e) { if (e.message !== "unauthorized") $("status").textContent = "Error: " + e.message; }

  // ---- time ----
  function relative(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "";
    let s = Math.round((Date.now() - t) / 1000);
    const future = s < 0; s = Math.abs(s);
    const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
    for (const [name, size] of units) {
      if (s >= size || name === "s") {
        const n = Math.floor(s / size);
        if (name === "s" && n < 5) return "just now";
        return future ? "in " + n + " " + name : n + " " + name + " ago";
      }
    }
    return "";
  }
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function zoneName(d) {
    if (state.utc) return "UTC";
    const off = -d.getTimezoneOffset();
    if (off === 0) return "UTC";
    return "UTC" + (off < 0 ? "-" : "+") + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
  }
  // A time in the chosen zone (local or UTC), always naming the zone.
  function absolute(iso, noMillis) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || "";
    const u = state.utc;
    const get = (local, utc) => (u ? d[utc]() : d[local]());
    return get("getFullYear", "getUTCFullYear") + "-" + pad(get("getMonth", "getUTCMonth") + 1) + "-" +
      pad(get("getDate", "getUTCDate")) + " " + pad(get("getHours", "getUTCHours")) + ":" +
      pad(get("getMinutes", "getUTCMinutes")) + ":" + pad(get("getSeconds", "getUTCSeconds")) +
      (noMillis ? "" : "." + pad(get("getMilliseconds", "getUTCMilliseconds"), 3)) + " " + zoneName(d);
  }
  function timeCell(iso) {
    return el("td", { title: iso + " (UTC)", "data-col": "time" }, el("span", { class: "rel" }, relative(iso)),
      el("span", { class: "abs" }, absolute(iso)));
  }
  function badge(outcome) {
    return el("span", { class: "badge outcome-" + outcome, "data-outcome": outcome }, outcome);
  }
  // `24h`, `90m`, `30s`, `2d` before `now`, or an RFC 3339 time, as Unix ms (null: unparsable).
  function parseWhen(text, now) {
    const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
    if (m) return now - Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2]];
    const t = Date.parse(text);
    return Number.isNaN(t) ? null : t;
  }

  // ---- filters, exclusions and the URL ----
  function filterParams() {
    const p = new URLSearchParams();
    for (const input of $("filters").querySelectorAll("input[name], select[name]")) {
      const v = input.value.trim();
      if (v !== "") p.set(input.name, v);
    }
    return p;
  }
  function setFilters(values) {
    for (const input of $("filters").querySelectorAll("input[name], select[name]")) {
      input.value = values[input.name] || "";
    }
  }
  // The query of the list, the tail and the timeline: filters, exclusions, and audit.* left out
  // unless the toggle is on.
  function queryParams() {
    const p = filterParams();
    for (const f of EXCLUDABLE) {
      const list = (state.excludes[f] || []).slice();
      if (f === "type" && !state.showAudit) list.push("audit.*");
      if (list.length) p.set(f + "_not", list.join(","));
    }
    return p;
  }
  // What the URL holds: filters, exclusions, toggles and the open event.
  function urlParams() {
    const p = filterParams();
    for (const f of EXCLUDABLE) {
      if ((state.excludes[f] || []).length) p.set(f + "_not", state.excludes[f].join(","));
    }
    if (state.showAudit) p.set("audit", "1");
    if (state.utc) p.set("tz", "utc");
    if (state.selected) p.set("event", state.selected);
    return p;
  }
  // Record the current view as a new history entry (back returns to the previous one).
  function pushUrl() {
    const p = urlParams().toString();
    const want = p ? "#" + p : location.pathname;
    if ((location.hash || "") === (p ? "#" + p : "")) return;
    history.pushState(null, "", want);
  }
  function readUrl() {
    const p = new URLSearchParams(location.hash.slice(1));
    const values = {};
    for (const [k, v] of p) values[k] = v;
    setFilters(values);
    state.excludes = {};
    for (const f of EXCLUDABLE) {
      const v = p.get(f + "_not");
      if (v) state.excludes[f] = v.split(",").filter((x) => x !== "");
    }
    state.showAudit = p.get("audit") === "1";
    $("show-audit").checked = state.showAudit;
    state.utc = p.get("tz") === "utc";
    renderTz();
    renderExcludes();
    return p.get("event");
  }
  // Show what the URL says: filters, list, timeline, and the event it names.
  async function applyUrl() {
    const ev = readUrl();
    state.cursors = [];
    state.selected = ev || null;
    await Promise.all([load(null), loadStats()]);
    if (!state.rendered) {
      // The first list and timeline after sign-in are drawn: the "first useful render" that
      // scripts/viewer-render.py reads (docs/viewer.md, Speed).
      state.rendered = true;
      performance.mark("authtrail:first-render");
      document.body.setAttribute("data-first-render-ms", String(Math.round(performance.now())));
    }
    if (ev) await openEvent(ev, false); else { $("detail").hidden = true; }
  }
  // A filter change from the page: new history entry, list and timeline from the newest.
  function refilter() {
    state.cursors = [];
    state.selected = null;
    $("detail").hidden = true;
    pushUrl();
    load(null);
    loadStats();
  }

  function renderExcludes() {
    const box = $("excludes");
    box.replaceChildren();
    for (const f of EXCLUDABLE) {
      for (const v of state.excludes[f] || []) {
        box.append(el("span", { class: "chip", "data-exclude": f, "data-value": v, title: "not " + f + " = " + v },
          "not " + f + ": ", el("span", { class: "trunc" }, v),
          el("button", { type: "button", class: "link", "aria-label": "Stop excluding " + f + " " + v,
            onclick: () => { state.excludes[f] = state.excludes[f].filter((x) => x !== v); renderExcludes(); refilter(); } }, "×")));
      }
    }
    if (box.children.length) box.prepend(el("span", { class: "muted" }, "Excluding:"));
    box.hidden = !box.children.length;
  }
  function renderTz() {
    const here = zoneName(new Date());
    $("tz-btn").textContent = state.utc ? "Times: UTC · show local" : "Times: local (" + here + ") · show UTC";
  }

  // Filter on a value (click), or exclude it (shift-click).
  function pivot(name, value, exclude) {
    if (exclude && EXCLUDABLE.includes(name)) {
      const list = state.excludes[name] || [];
      if (!list.includes(value)) list.push(value);
      state.excludes[name] = list;
      const input = $("filters").querySelector("[name='" + name + "']");
      if (input && input.value === value) input.value = "";
      renderExcludes();
    } else {
      const input = $("filters").querySelector("[name='" + name + "']");
      if (!input) return;
      input.value = value;
      if (state.excludes[name]) state.excludes[name] = state.excludes[name].filter((x) => x !== value);
      renderExcludes();
    }
    refilter();
  }
  // A value that filters on itself when clicked; the full value is on hover.
  function pivotButton(name, value, label) {
    const shown = label === undefined ? value : label;
    return el("button", {
      type: "button", class: "pivot trunc", "data-pivot": name, "data-value": value,
      title: shown + "\nclick: only " + name + " = " + value + " · shift-click: exclude it",
      "aria-label": "Filter on " + name + " " + value + " (shift: exclude)",
      onclick: (ev) => { ev.stopPropagation(); pivot(name, value, ev.shiftKey); },
    }, shown);
  }
  // Verified or only claimed: a badge naming where the value came from.
  function identityBadge(verified, source, what) {
    const src = source || "unknown source";
    return verified
      ? el("span", { class: "id id-verified", "data-verified": "true", title: what + " verified — source: " + src }, "✓ verified")
      : el("span", { class: "id id-claimed", "data-verified": "false", title: what + " claimed, not verified — source: " + src }, "claimed");
  }
  function conflictBadge(e) {
    if (!e.app_conflict || !e.app_conflict.length) return null;
    const all = e.app_conflict.map((a) => a.value + " (" + a.source + ")").join(", ");
    return el("span", { class: "id conflict", "data-conflict": "true", title: "app sources disagree: " + all }, "⚠ app conflict");
  }

  // ---- list ----
  async function load(cursor) {
    const gen = ++state.gen;
    if (!cursor) {
      // The newest page: following restarts from its end (older pages keep the tail running,
      // and what it finds waits behind the counter).
      state.tail = null;
      state.pending = [];
      renderNewCount();
    }
    const p = queryParams();
    p.set("limit", String(PAGE_SIZE));
    if (cursor) p.set("cursor", cursor);
    $("status").textContent = "Loading…";
    try {
      const page = await api("/v1/events?" + p.toString());
      if (gen !== state.gen) return;
      state.events = page.events;
      state.next = page.next_cursor;
      if (!cursor) state.seen = new Set(page.events.map((e) => e.id));
      if (page.tail_cursor) state.tail = page.tail_cursor;
      renderRows(page.events);
      renderStatus();
      $("older-btn").disabled = !page.next_cursor;
      $("newest-btn").disabled = state.cursors.length === 0;
    } catch (e) { report(e); }
  }
  function renderStatus() {
    const n = state.events.length;
    $("status").textContent = n === 0 ? "No events match." :
      n + (n === 1 ? " event" : " events") + (state.cursors.length ? " (older page " + (state.cursors.length + 1) + ")" : "") +
      (state.showAudit ? "" : " · the trail's own reads hidden");
  }

  function actorText(a) {
    if (!a) return "";
    return a.id || (a.kind === "anonymous" ? "anonymous" : "");
  }
  function targetText(t) {
    if (!t) return "";
    return t.kind + ":" + t.id + (t.display ? " (" + t.display + ")" : "");
  }

  function row(e) {
    const app = e.app ? e.app.value : "";
    const actor = actorText(e.actor);
    const tr = el("tr", { "data-id": e.id, class: "row-" + e.outcome, tabindex: "-1" },
      timeCell(e.time),
      el("td", { "data-col": "type" }, pivotButton("type", e.type)),
      el("td", { "data-col": "outcome" }, badge(e.outcome)),
      el("td", { class: "strong", "data-col": "app" }, app ? pivotButton("app", app) : "",
        e.app ? identityBadge(e.app.verified, e.app.source, "app") : null, conflictBadge(e)),
      el("td", { class: "strong", "data-col": "actor" }, e.actor && e.actor.id ? pivotButton("actor", e.actor.id) : actor,
        e.actor && e.actor.id ? identityBadge(e.actor.verified, e.actor.source, "actor") : null,
        ...(e.tokens || []).map(tokenMark)),
      el("td", { "data-col": "target" }, e.target ? pivotButton("target", e.target.id, targetText(e.target)) : ""),
      el("td", { "data-col": "reason" }, e.reason ? pivotButton("reason", e.reason) : ""),
      el("td", { "data-col": "status" }, e.http && e.http.status != null ? e.http.status : "—"),
      el("td", { class: "mono", "data-col": "ip" }, e.source && e.source.ip ? pivotButton("ip", e.source.ip) : ""));
    tr.addEventListener("click", () => openEvent(e.id, true));
    return tr;
  }
  // A token of a row: opens its life.
  function tokenMark(t) {
    const key = t.jti || t.fingerprint;
    return el("button", { type: "button", class: "tok", "data-token": key,
      title: t.role + " " + t.kind + " token " + (t.jti ? "jti " + t.jti : t.fingerprint) + " — open its life",
      "aria-label": "Token life of the " + t.role + " " + t.kind + " token",
      onclick: (ev) => { ev.stopPropagation(); openToken(key); } }, "token " + t.role);
  }
  function renderRows(events) {
    const tbody = $("events-table").querySelector("tbody");
    tbody.replaceChildren(...events.map(row));
    state.kbd = -1;
    markSelected();
  }
  function markSelected() {
    for (const r of document.querySelectorAll("#events-table tbody tr")) {
      r.classList.toggle("selected", r.dataset.id === state.selected);
    }
  }

  // ---- live tail: ascending cursor polling from where the newest page ended ----
  function renderNewCount() {
    const b = $("new-events-btn");
    const n = state.pending.length;
    b.hidden = n === 0;
    b.textContent = n + (n === 1 ? " new event" : " new events") + " — show";
    b.setAttribute("data-count", String(n));
  }
  function showNew(events) {
    // `events` is oldest first: each goes on top, so the newest ends first.
    const tbody = $("events-table").querySelector("tbody");
    for (const e of events) {
      tbody.prepend(row(e));
      state.events.unshift(e);
    }
    while (state.events.length > MAX_ROWS) { state.events.pop(); tbody.lastElementChild.remove(); }
    state.kbd = -1;
    markSelected();
    renderStatus();
  }
  function flushPending() {
    const p = state.pending;
    state.pending = [];
    renderNewCount();
    if (state.cursors.length) { state.cursors = []; load(null); return; }
    showNew(p);
  }
  async function poll() {
    if (!state.live || state.polling || !state.tail) return;
    state.polling = true;
    const gen = state.gen;
    let more = false;
    try {
      const p = queryParams();
      p.set("order", "asc");
      p.set("limit", String(TAIL_LIMIT));
      p.set("cursor", state.tail);
      const page = await api("/v1/events?" + p.toString());
      if (gen !== state.gen) return; // the filters changed: that load set a new tail
      state.tail = page.next_cursor;
      const fresh = page.events.filter((e) => !state.seen.has(e.id));
      for (const e of fresh) state.seen.add(e.id);
      if (fresh.length) {
        if (state.paused || state.cursors.length) { state.pending.push(...fresh); renderNewCount(); } else showNew(fresh);
        if (Date.now() - state.statsAt > 5000) loadStats();
      }
      more = page.events.length === TAIL_LIMIT;
    } catch (e) { report(e); } finally { state.polling = false; }
    if (more) poll();
  }
  function setLive(on) {
    state.live = on;
    state.paused = false;
    $("live-btn").setAttribute("aria-pressed", String(on));
    $("live-btn").textContent = on ? "Following live — stop" : "Follow live";
    $("live-btn").classList.toggle("on", on);
    $("pause-btn").hidden = !on;
    setPaused(false);
    clearInterval(state.timer);
    state.timer = on ? setInterval(poll, TAIL_EVERY_MS) : null;
    document.body.setAttribute("data-live", on ? "on" : "off");
    if (on) poll();
  }
  function setPaused(p) {
    state.paused = p;
    $("pause-btn").setAttribute("aria-pressed", String(p));
    $("pause-btn").textContent = p ? "Resume" : "Pause";
    if (!p && state.pending.length) flushPending();
  }

  // ---- timeline ----
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  // The bucket (seconds) for a window: the smallest step giving at most about 60 bars.
  function bucketFor(spanMs) {
    const want = spanMs / 1000 / 60;
    for (const s of STEPS) if (s >= want) return s;
    return Math.ceil(want);
  }
  async function loadStats() {
    const gen = ++state.statsGen;
    state.statsAt = Date.now();
    const p = queryParams();
    const now = Date.now();
    const until = p.get("until") ? parseWhen(p.get("until"), now) : now;
    const since = p.get("since") ? parseWhen(p.get("since"), now) : (until || now) - 864e5;
    const span = since !== null && until !== null && until > since ? until - since : 864e5;
    const bucket = bucketFor(span);
    if (!p.get("since")) p.set("since", new Date((until || now) - 864e5).toISOString());
    p.set("bucket", bucket + "s");
    // The timeline needs bucket × outcome only; the actor page also splits by type and app (one
    // actor's rows are few).
    p.set("group", p.get("actor") ? "type,outcome,app" : "outcome");
    try {
      const st = await api("/v1/stats?" + p.toString());
      if (gen === state.statsGen) { renderTimeline(st); renderActor(p.get("actor"), st); }
    } catch (e) { report(e); }
  }
  function renderTimeline(st) {
    // The axis covers whole buckets (they are aligned to the epoch), so the newest one, still
    // filling, is drawn as wide as the others.
    const b = st.bucket_ms;
    const from = Math.floor(Date.parse(st.since) / b) * b, to = Math.ceil(Date.parse(st.until) / b) * b;
    state.window = { from, to };
    const buckets = new Map();
    for (const r of st.rows) {
      const t = Date.parse(r.bucket);
      if (!buckets.has(t)) buckets.set(t, { success: 0, failure: 0, error: 0, unknown: 0 });
      const c = buckets.get(t);
      c[OUTCOMES.includes(r.outcome) ? r.outcome : "unknown"] += r.count;
    }
    let max = 0;
    for (const c of buckets.values()) max = Math.max(max, OUTCOMES.reduce((s, o) => s + c[o], 0));
    const s = $("tl-svg");
    s.replaceChildren();
    const W = 1000, H = 100, span = Math.max(1, to - from);
    const x = (t) => ((Math.min(Math.max(t, from), to) - from) / span) * W;
    for (const [t, c] of [...buckets.entries()].sort((a, b2) => a[0] - b2[0])) {
      const x0 = x(t), x1 = x(t + b);
      const w = Math.max(1, x1 - x0 - (x1 - x0 > 4 ? 1 : 0));
      let y = H;
      const total = OUTCOMES.reduce((acc, o) => acc + c[o], 0);
      const tip = absolute(new Date(t).toISOString(), true) + " — " + total + " events: " +
        OUTCOMES.filter((o) => c[o]).map((o) => c[o] + " " + o).join(", ");
      for (const o of OUTCOMES) {
        if (!c[o]) continue;
        const h = Math.max(1, (c[o] / max) * (H - 4));
        y -= h;
        const r = svg("rect", { x: x0, y, width: w, height: h, class: "bar bar-" + o,
          "data-outcome": o, "data-count": c[o], "data-bucket": new Date(t).toISOString(), "data-bucket-ms": b });
        const title = svg("title");
        title.textContent = tip;
        r.append(title);
        s.append(r);
      }
    }
    s.append(svg("rect", { id: "tl-sel", class: "sel", x: 0, y: 0, width: 0, height: H }));
    $("tl-range").textContent = absolute(st.since, true) + " → " + absolute(st.until, true) + " · " +
      st.total + (st.total === 1 ? " event" : " events") + " · bars of " + human(b);
    const axis = $("tl-axis");
    axis.replaceChildren();
    for (let i = 0; i <= 4; i++) axis.append(el("span", {}, absolute(new Date(from + (span * i) / 4).toISOString(), true)));
  }
  function human(ms) {
    const s = ms / 1000;
    if (s % 86400 === 0) return s / 86400 + " d";
    if (s % 3600 === 0) return s / 3600 + " h";
    if (s % 60 === 0) return s / 60 + " min";
    return s + " s";
  }
  function setWindow(from, to) {
    const f = $("filters");
    f.querySelector("[name=since]").value = new Date(from).toISOString();
    f.querySelector("[name=until]").value = new Date(to).toISOString();
    refilter();
  }
  function initTimeline() {
    const s = $("tl-svg");
    let drag = null;
    const frac = (ev) => {
      const r = s.getBoundingClientRect();
      return Math.min(1, Math.max(0, (ev.clientX - r.left) / Math.max(1, r.width)));
    };
    s.addEventListener("mousedown", (ev) => { if (state.window) { drag = { a: frac(ev), b: frac(ev), target: ev.target }; ev.preventDefault(); } });
    window.addEventListener("mousemove", (ev) => {
      if (!drag) return;
      drag.b = frac(ev);
      const sel = $("tl-sel");
      if (sel) { sel.setAttribute("x", String(Math.min(drag.a, drag.b) * 1000)); sel.setAttribute("width", String(Math.abs(drag.b - drag.a) * 1000)); }
    });
    window.addEventListener("mouseup", (ev) => {
      if (!drag) return;
      const d = drag;
      drag = null;
      d.b = frac(ev);
      const { from, to } = state.window;
      if (Math.abs(d.b - d.a) > 0.005) {
        const a = Math.min(d.a, d.b), b = Math.max(d.a, d.b);
        setWindow(from + a * (to - from), from + b * (to - from));
      } else if (d.target && d.target.getAttribute && d.target.getAttribute("data-bucket")) {
        const t = Date.parse(d.target.getAttribute("data-bucket"));
        setWindow(t, t + Number(d.target.getAttribute("data-bucket-ms")));
      }
    });
  }

  // ---- actor page: what one actor did in the window, from the timeline's own stats ----
  function renderActor(actor, st) {
    const page = $("actor-page");
    if (!actor) { page.hidden = true; page.removeAttribute("data-actor"); return; }
    const byType = new Map(), byApp = new Map();
    let total = 0, first = null, last = null;
    for (const r of st.rows) {
      if (!byType.has(r.type)) byType.set(r.type, { success: 0, failure: 0, error: 0, unknown: 0, total: 0 });
      const c = byType.get(r.type);
      c[OUTCOMES.includes(r.outcome) ? r.outcome : "unknown"] += r.count;
      c.total += r.count;
      total += r.count;
      const app = r.app === null || r.app === undefined ? "(no app)" : r.app;
      byApp.set(app, (byApp.get(app) || 0) + r.count);
      const t = Date.parse(r.bucket);
      if (first === null || t < first) first = t;
      if (last === null || t > last) last = t;
    }
    $("actor-name").textContent = actor;
    page.setAttribute("data-actor", actor);
    page.setAttribute("data-total", String(total));
    const apps = [...byApp.entries()].sort((a, b) => b[1] - a[1]).map(([a, n]) => a + " (" + n + ")").join(", ");
    $("actor-meta").textContent = total === 0 ? "No events of this actor in the window (with the current filters and exclusions)." :
      total + (total === 1 ? " event" : " events") + " between " + absolute(st.since, true) + " and " + absolute(st.until, true) +
      " · active from the bucket of " + absolute(new Date(first).toISOString(), true) + " to that of " +
      absolute(new Date(last).toISOString(), true) + " · apps: " + apps;
    const tbody = $("actor-summary").querySelector("tbody");
    const rows = [...byType.entries()].sort((a, b) => b[1].total - a[1].total || (a[0] < b[0] ? -1 : 1));
    tbody.replaceChildren(...rows.map(([type, c]) => el("tr", { "data-type": type },
      el("td", {}, el("button", { type: "button", class: "pivot trunc", "data-summary-type": type,
        title: type + "\nclick: only " + type + " of this actor", onclick: () => pivot("type", type, false) }, type)),
      el("td", { class: "num", "data-count": c.total }, c.total),
      ...OUTCOMES.map((o) => el("td", { class: "num", "data-outcome": o, "data-count": c[o] }, c[o] ?
        el("button", { type: "button", class: "pivot", title: "only " + type + " with outcome " + o,
          onclick: () => { setField("outcome", o); pivot("type", type, false); } }, c[o]) : el("span", { class: "muted" }, "0"))))));
    page.hidden = false;
  }
  function setField(name, value) {
    const input = $("filters").querySelector("[name='" + name + "']");
    if (input) input.value = value;
  }

  // ---- saved views (localStorage) ----
  // Parameters a view may hold: what urlParams writes, minus the open event.
  function viewParamAllowed(name) {
    return name === "audit" || name === "tz" || EXCLUDABLE.some((f) => name === f + "_not") ||
      !!$("filters").querySelector("[name='" + name + "']");
  }
  function cleanViewParams(text) {
    const p = new URLSearchParams(text);
    const out = new URLSearchParams();
    for (const [k, v] of p) if (viewParamAllowed(k)) out.set(k, v);
    return out.toString();
  }
  function readViews() {
    let list;
    try { list = JSON.parse(localStorage.getItem(VIEWS_KEY) || "[]"); } catch (_) { list = []; }
    if (!Array.isArray(list)) return [];
    return list.filter((v) => v && typeof v.name === "string" && typeof v.params === "string").slice(0, MAX_VIEWS);
  }
  function writeViews(list) {
    try { localStorage.setItem(VIEWS_KEY, JSON.stringify(list)); } catch (e) { $("status").textContent = "Could not save views: " + e.message; }
  }
  function saveView() {
    const name = $("view-name").value.trim().slice(0, 80);
    if (!name) { $("view-name").focus(); return; }
    const params = cleanViewParams(urlParams().toString());
    const list = readViews().filter((v) => v.name !== name);
    list.unshift({ name, params });
    writeViews(list.slice(0, MAX_VIEWS));
    $("view-name").value = "";
    renderViews();
    $("status").textContent = "Saved view \u201c" + name + "\u201d.";
  }
  function applyView(v) {
    state.selected = null;
    history.pushState(null, "", v.params ? "#" + cleanViewParams(v.params) : location.pathname);
    $("views").open = false;
    applyUrl();
  }
  function renderViews() {
    const ul = $("views-list");
    const list = readViews();
    ul.replaceChildren(...list.map((v) => el("li", { "data-view": v.name },
      el("button", { type: "button", class: "link trunc", "data-apply-view": v.name, title: v.params || "(no filters)",
        onclick: () => applyView(v) }, v.name),
      el("button", { type: "button", class: "link", "data-delete-view": v.name, "aria-label": "Delete view " + v.name,
        onclick: () => { writeViews(readViews().filter((x) => x.name !== v.name)); renderViews(); } }, "×"))));
    if (!list.length) ul.append(el("li", { class: "muted" }, "No saved views yet."));
  }

  // ---- columns (localStorage) ----
  function hiddenColumns() {
    let list;
    try { list = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "[]"); } catch (_) { list = []; }
    return Array.isArray(list) ? list.filter((c) => COLUMNS.some(([k]) => k === c)) : [];
  }
  function applyColumns() {
    const hidden = hiddenColumns();
    const table = $("events-table");
    for (const [k] of COLUMNS) table.classList.toggle("hide-" + k, hidden.includes(k));
    for (const box of $("columns-list").querySelectorAll("input[data-column]")) box.checked = !hidden.includes(box.getAttribute("data-column"));
  }
  function initColumns() {
    const box = $("columns-list");
    box.replaceChildren(...COLUMNS.map(([k, label]) => {
      const input = el("input", { type: "checkbox", "data-column": k, "aria-label": "Show the " + label + " column" });
      input.addEventListener("change", () => {
        const hidden = new Set(hiddenColumns());
        if (input.checked) hidden.delete(k); else hidden.add(k);
        try { localStorage.setItem(COLUMNS_KEY, JSON.stringify([...hidden])); } catch (_) { /* kept for this page only */ }
        applyColumns();
      });
      return el("label", {}, input, label);
    }));
    applyColumns();
  }

  // ---- detail ----
  function field(dl, name, value, ...extra) {
    if (value === undefined || value === null || value === "") return;
    dl.append(el("dt", {}, name), el("dd", { "data-field": name }, value, ...extra));
  }

  async function openEvent(id, push) {
    state.selected = id;
    markSelected();
    if (push) pushUrl();
    let e;
    try { e = await api("/v1/events/" + encodeURIComponent(id)); } catch (err) { report(err); return; }
    if (state.selected !== id) return;
    $("token-life").hidden = true;
    $("detail-title").textContent = e.type;
    $("detail").setAttribute("data-event", e.id);
    const dl = $("detail-fields");
    dl.replaceChildren();
    field(dl, "time", absolute(e.time) + " (" + relative(e.time) + ")");
    field(dl, "type", pivotButton("type", e.type));
    dl.append(el("dt", {}, "outcome"), el("dd", { "data-field": "outcome" }, badge(e.outcome)));
    field(dl, "reason", e.reason ? pivotButton("reason", e.reason) : "");
    field(dl, "stage", e.stage);
    if (e.app) field(dl, "app", pivotButton("app", e.app.value), " ", identityBadge(e.app.verified, e.app.source, "app"));
    if (e.app_conflict) field(dl, "app conflict", conflictBadge(e), " ", e.app_conflict.map((a) => a.value + " (" + a.source + ")").join(", "));
    field(dl, "actor", e.actor.id ? pivotButton("actor", e.actor.id) : actorText(e.actor), " ",
      identityBadge(e.actor.verified, e.actor.source, "actor"));
    field(dl, "actor kind", e.actor.kind);
    field(dl, "actor display", e.actor.display);
    field(dl, "actor source", e.actor.source);
    if (e.target) field(dl, "target", pivotButton("target", e.target.id, targetText(e.target)));
    if (e.source) { field(dl, "ip", e.source.ip ? pivotButton("ip", e.source.ip) : ""); field(dl, "user agent", e.source.user_agent); }
    field(dl, "request", e.http.method + " " + e.http.path);
    field(dl, "route", e.http.route ? pivotButton("route", e.http.route) : "");
    field(dl, "status", e.http.status != null ? String(e.http.status) : "no response");
    field(dl, "duration", e.http.duration_ms + " ms");
    field(dl, "request id", e.http.request_id ? pivotButton("request_id", e.http.request_id) : "");
    field(dl, "event id", e.id);
    field(dl, "seq", e.seq != null ? String(e.seq) : "");
    $("whole-request-btn").onclick = () => {
      setFilters({ request_id: e.http.request_id });
      state.excludes = {};
      renderExcludes();
      refilter();
    };
    const tokens = $("detail-tokens");
    tokens.replaceChildren();
    for (const t of e.tokens || []) tokens.append(tokenItem(t));
    if (!tokens.children.length) tokens.append(el("li", { class: "muted" }, "none"));
    $("detail-json").textContent = JSON.stringify(e, null, 2);
    $("detail").hidden = false;
  }
  function tokenItem(t) {
    const key = t.jti || t.fingerprint;
    return el("li", {},
      t.role + " " + t.kind + " ",
      el("button", { type: "button", class: "link mono trunc", "data-token": key, title: "Token life of " + key, onclick: () => openToken(key) },
        t.jti ? "jti " + t.jti : t.fingerprint.slice(0, 16) + "…"),
      " ", identityBadge(t.verified, t.source, "token"),
      t.invalid ? el("span", { class: "muted" }, " " + t.invalid) : null,
      " ", el("button", { type: "button", class: "link", title: "Only events with this token", onclick: () => pivot("token", key, false) }, "filter"));
  }

  async function openToken(key) {
    let life;
    try { life = await api("/v1/tokens/" + encodeURIComponent(key)); } catch (err) { report(err); return; }
    $("detail").hidden = true;
    $("token-key").textContent = key;
    const s = life.summary || {};
    const dl = $("token-summary");
    dl.replaceChildren();
    field(dl, "kinds", (s.kinds || []).join(", "));
    field(dl, "subject", (s.sub || []).join(", "));
    field(dl, "apps", (s.apps || []).join(", "));
    field(dl, "first seen", s.first_seen ? absolute(s.first_seen) : "");
    field(dl, "last seen", s.last_seen ? absolute(s.last_seen) : "");
    field(dl, "expires", s.exp ? absolute(new Date(s.exp * 1000).toISOString()) : "");
    field(dl, "revoked", s.revoked ? "yes" : "no");
    const ol = $("token-events");
    ol.replaceChildren();
    for (const e of life.events) {
      const mine = (e.tokens || []).filter((t) => t.fingerprint === key || t.jti === key);
      const others = (e.tokens || []).filter((t) => t.fingerprint !== key && t.jti !== key);
      ol.append(el("li", {}, badge(e.outcome), " ", el("strong", {}, e.type), " ",
        mine.length ? "(" + mine.map((t) => t.role).join(", ") + ") " : "(rotation) ",
        el("span", { class: "strong" }, e.app ? e.app.value : "—"), " · ",
        e.actor && e.actor.id ? pivotButton("actor", e.actor.id) : el("span", { class: "strong" }, actorText(e.actor) || "—"), " ",
        el("span", { class: "muted", title: e.time }, absolute(e.time) + " (" + relative(e.time) + ")"), " ",
        el("button", { type: "button", class: "link", onclick: () => openEvent(e.id, true) }, "open"),
        ...others.map((t) => el("button", { type: "button", class: "link mono", "data-token": t.jti || t.fingerprint,
          title: "Token life of " + (t.jti || t.fingerprint), onclick: () => openToken(t.jti || t.fingerprint) },
        t.role + " " + (t.jti || t.fingerprint.slice(0, 12) + "…")))));
    }
    $("token-life").hidden = false;
  }

  // ---- keyboard ----
  function onKey(ev) {
    const tag = (ev.target && ev.target.tagName) || "";
    const typing = tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA";
    if (ev.key === "Escape") {
      if (typing) ev.target.blur(); else if (!$("detail").hidden) { $("detail").hidden = true; state.selected = null; markSelected(); pushUrl(); }
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || $("app").hidden) return;
    const rows = Array.from(document.querySelectorAll("#events-table tbody tr"));
    if (ev.key === "/") { ev.preventDefault(); $("filters").querySelector("[name=q]").focus(); return; }
    if (ev.key === "j" || ev.key === "k") {
      if (!rows.length) return;
      const cur = state.kbd >= 0 ? state.kbd : rows.findIndex((r) => r.dataset.id === state.selected);
      const next = ev.key === "j" ? Math.min(rows.length - 1, cur + 1) : Math.max(0, cur - 1);
      state.kbd = next;
      rows.forEach((r, i) => r.classList.toggle("cursor", i === next));
      rows[next].focus();
      rows[next].scrollIntoView({ block: "nearest" });
      ev.preventDefault();
    } else if (ev.key === "Enter" && state.kbd >= 0 && rows[state.kbd] && ev.target.tagName !== "BUTTON") {
      openEvent(rows[state.kbd].dataset.id, true);
      ev.preventDefault();
    }
  }

  // ---- export ----
  async function exportAs(format) {
    // Exports take the filters only: exclusions (and hiding audit.*) apply to the list and timeline.
    const p = filterParams();
    p.set("format", format);
    $("status").textContent = "Exporting…";
    try {
      const resp = await fetch("/v1/export?" + p.toString(), { headers: { Authorization: "Bearer " + token() } });
      if (!resp.ok) {
        let msg = "HTTP " + resp.status;
        try { msg = (await resp.json()).message || msg; } catch (_) { /* not JSON */ }
        throw new Error(msg);
      }
      const blob = await resp.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: "authtrail-events." + (format === "csv" ? "csv" : format === "ocsf" ? "ocsf.ndjson" : "ndjson") });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      $("status").textContent = "Export ready.";
    } catch (e) {
      $("status").textContent = "Export failed: " + e.message;
    }
  }

  // ---- sign in / out ----
  function showApp(me) {
    $("signin").hidden = true;
    $("app").hidden = false;
    $("who").hidden = false;
    const apps = me.apps.includes("*") ? "all apps" : me.apps.join(", ");
    $("who").textContent = me.name + " · " + apps;
    $("who").title = "permissions: " + me.permissions.join(", ");
    $("signout-btn").hidden = false;
    for (const b of document.querySelectorAll(".exports")) b.hidden = !me.permissions.includes("export");
  }
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.pending = [];
    setLive(false);
    // Nothing the previous credential could read stays on the page.
    state.gen++;
    state.statsGen++;
    state.events = [];
    state.selected = null;
    state.window = null;
    $("events-table").querySelector("tbody").replaceChildren();
    for (const id of ["tl-svg", "tl-range", "tl-axis", "detail-fields", "detail-tokens", "detail-json", "token-summary", "token-events"]) $(id).replaceChildren();
    $("detail").hidden = true;
    $("token-life").hidden = true;
    $("actor-page").hidden = true;
    $("actor-summary").querySelector("tbody").replaceChildren();
    $("status").textContent = "";
    $("app").hidden = true;
    $("who").hidden = true;
    $("signout-btn").hidden = true;
    $("signin").hidden = false;
    const err = $("signin-error");
    err.textContent = message || "";
    err.hidden = !message;
  }
  async function signIn(t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    // The list and the timeline are asked for at once with who the credential is (one round
    // trip less before the first render); the API answers them within the credential's scope
    // either way, and a refused token signs out and drops what was loading (state.gen).
    const shown = applyUrl();
    const resp = await fetch("/v1/whoami", { headers: { Authorization: "Bearer " + t }, cache: "no-store" });
    if (resp.status === 401) { signOut("That token was not accepted."); return; }
    if (!resp.ok) { signOut("Sign-in failed: HTTP " + resp.status); return; }
    const me = await resp.json();
    if (!me.permissions.includes("read")) { signOut("That credential may not read events."); return; }
    showApp(me);
    await shown;
  }

  function init() {
    const dl = $("types");
    for (const t of TYPES) dl.append(el("option", { value: t }));
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      $("token-input").value = "";
      if (t) signIn(t);
    });
    $("signout-btn").addEventListener("click", () => signOut(""));
    $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refilter(); });
    $("reset-btn").addEventListener("click", () => {
      setFilters({});
      state.excludes = {};
      renderExcludes();
      refilter();
    });
    $("failed-logins-btn").addEventListener("click", () => {
      setFilters({ type: "auth.login", outcome: "failure" });
      refilter();
    });
    $("show-audit").addEventListener("change", () => { state.showAudit = $("show-audit").checked; refilter(); });
    $("tz-btn").addEventListener("click", () => {
      state.utc = !state.utc;
      renderTz();
      history.replaceState(null, "", "#" + urlParams().toString());
      renderRows(state.events);
      loadStats();
      if (state.selected && !$("detail").hidden) openEvent(state.selected, false);
    });
    $("older-btn").addEventListener("click", () => {
      if (!state.next) return;
      state.cursors.push(state.next);
      load(state.next);
    });
    $("newest-btn").addEventListener("click", () => { state.cursors = []; load(null); });
    $("live-btn").addEventListener("click", () => setLive(!state.live));
    $("pause-btn").addEventListener("click", () => setPaused(!state.paused));
    $("new-events-btn").addEventListener("click", flushPending);
    $("detail-close").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; markSelected(); pushUrl(); });
    $("token-close").addEventListener("click", () => { $("token-life").hidden = true; });
    for (const b of document.querySelectorAll("[data-export]")) {
      b.addEventListener("click", () => exportAs(b.getAttribute("data-export")));
    }
    window.addEventListener("popstate", () => { if (token() && !$("app").hidden) applyUrl(); });
    document.addEventListener("keydown", onKey);
    initTimeline();
    initColumns();
    renderViews();
    $("view-save").addEventListener("click", saveView);
    $("view-name").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); saveView(); } });
    $("actor-close").addEventListener("click", () => { setField("actor", ""); refilter(); });
    window.addEventListener("storage", (ev) => { if (ev.key === VIEWS_KEY) renderViews(); if (ev.key === COLUMNS_KEY) applyColumns(); });
    renderTz();
    if (token()) signIn(token()); else signOut("");
  }

  document.addEventListener("DOMContentLoaded", init);
})();
