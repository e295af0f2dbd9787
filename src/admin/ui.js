// authtrail viewer. Reads the admin API with the bearer token kept in sessionStorage.
// Every value from the API reaches the page through textContent or a text node: never innerHTML.
"use strict";

(function () {
  const TOKEN_KEY = "authtrail.token";
  const TYPES = ["auth.*", "auth.login", "auth.logout", "auth.mfa.challenge", "auth.mfa.verify",
    "token.*", "token.issue", "token.refresh", "token.revoke", "token.verify", "token.invalid",
    "password.*", "password.reset.request", "password.reset.complete", "password.change",
    "email.verify.request", "email.verify.complete", "account.*", "account.register",
    "account.update", "account.deactivate", "account.reactivate", "account.delete", "account.lock",
    "provider.*", "app.settings.update", "app.key.rotate", "admin.role.grant", "admin.role.revoke",
    "support.impersonate", "support.action", "access.denied", "access.would_deny", "audit.*"];
  const PAGE_SIZE = 50;

  const $ = (id) => document.getElementById(id);
  const state = { cursors: [], next: null, events: [], selected: null };

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

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status === 401) { signOut("Your token was not accepted."); throw new Error("unauthorized"); }
    if (!resp.ok) throw new Error((body && body.message) || ("HTTP " + resp.status));
    return body;
  }

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
  function absolute(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || "";
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
      pad(d.getMilliseconds(), 3);
  }
  function timeCell(iso) {
    return el("td", { title: iso }, el("span", { class: "rel" }, relative(iso)),
      el("span", { class: "abs" }, absolute(iso)));
  }
  function badge(outcome) {
    return el("span", { class: "badge outcome-" + outcome, "data-outcome": outcome }, outcome);
  }

  // ---- filters ----
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
  function saveFiltersToHash() {
    const p = filterParams().toString();
    history.replaceState(null, "", p ? "#" + p : location.pathname);
  }
  function loadFiltersFromHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const values = {};
    for (const [k, v] of p) values[k] = v;
    setFilters(values);
  }

  // ---- list ----
  async function load(cursor) {
    const p = filterParams();
    p.set("limit", String(PAGE_SIZE));
    if (cursor) p.set("cursor", cursor);
    $("status").textContent = "Loading…";
    try {
      const page = await api("/v1/events?" + p.toString());
      state.events = page.events;
      state.next = page.next_cursor;
      renderRows(page.events);
      const n = page.events.length;
      $("status").textContent = n === 0 ? "No events match." :
        n + (n === 1 ? " event" : " events") + (state.cursors.length ? " (older page " + (state.cursors.length + 1) + ")" : "");
      $("older-btn").disabled = !page.next_cursor;
      $("newest-btn").disabled = state.cursors.length === 0;
      $("page-info").textContent = "";
    } catch (e) {
      if (e.message !== "unauthorized") $("status").textContent = "Error: " + e.message;
    }
  }

  function actorText(a) {
    if (!a) return "";
    return a.id || (a.kind === "anonymous" ? "anonymous" : "");
  }
  function targetText(t) {
    if (!t) return "";
    return t.kind + ":" + t.id + (t.display ? " (" + t.display + ")" : "");
  }

  function renderRows(events) {
    const tbody = $("events-table").querySelector("tbody");
    tbody.replaceChildren();
    for (const e of events) {
      const tr = el("tr", { "data-id": e.id, class: "row-" + e.outcome },
        timeCell(e.time),
        el("td", { "data-col": "type" }, e.type),
        el("td", { "data-col": "outcome" }, badge(e.outcome)),
        el("td", { class: "strong", "data-col": "app" }, e.app ? e.app.value : ""),
        el("td", { class: "strong", "data-col": "actor" }, actorText(e.actor)),
        el("td", { "data-col": "target" }, targetText(e.target)),
        el("td", { "data-col": "reason" }, e.reason || ""),
        el("td", { "data-col": "status" }, e.http && e.http.status != null ? e.http.status : "—"),
        el("td", { class: "mono", "data-col": "ip" }, e.source && e.source.ip ? e.source.ip : ""));
      tr.addEventListener("click", () => openEvent(e.id, tr));
      tbody.append(tr);
    }
  }

  // ---- detail ----
  function field(dl, name, value, extra) {
    if (value === undefined || value === null || value === "") return;
    dl.append(el("dt", {}, name), el("dd", { "data-field": name }, value, extra || null));
  }
  function verifiedMark(v) {
    return v ? el("span", { class: "verified" }, "verified") : el("span", { class: "unverified" }, "unverified");
  }

  async function openEvent(id, row) {
    for (const r of document.querySelectorAll("tbody tr.selected")) r.classList.remove("selected");
    if (row) row.classList.add("selected");
    let e;
    try { e = await api("/v1/events/" + encodeURIComponent(id)); } catch (err) {
      if (err.message !== "unauthorized") $("status").textContent = "Error: " + err.message;
      return;
    }
    $("token-life").hidden = true;
    $("detail-title").textContent = e.type;
    const dl = $("detail-fields");
    dl.replaceChildren();
    field(dl, "time", absolute(e.time) + " (" + relative(e.time) + ")");
    field(dl, "type", e.type);
    dl.append(el("dt", {}, "outcome"), el("dd", { "data-field": "outcome" }, badge(e.outcome)));
    field(dl, "reason", e.reason);
    field(dl, "stage", e.stage);
    if (e.app) field(dl, "app", e.app.value, verifiedMark(e.app.verified));
    if (e.app_conflict) field(dl, "app conflict", e.app_conflict.map((a) => a.value + " (" + a.source + ")").join(", "));
    field(dl, "actor", actorText(e.actor), verifiedMark(e.actor.verified));
    field(dl, "actor kind", e.actor.kind);
    field(dl, "actor source", e.actor.source);
    if (e.target) field(dl, "target", targetText(e.target));
    if (e.source) { field(dl, "ip", e.source.ip); field(dl, "user agent", e.source.user_agent); }
    field(dl, "request", e.http.method + " " + e.http.path);
    field(dl, "route", e.http.route);
    field(dl, "status", e.http.status != null ? String(e.http.status) : "no response");
    field(dl, "duration", e.http.duration_ms + " ms");
    field(dl, "request id", e.http.request_id);
    field(dl, "event id", e.id);
    field(dl, "seq", e.seq != null ? String(e.seq) : "");
    const tokens = $("detail-tokens");
    tokens.replaceChildren();
    for (const t of e.tokens || []) {
      const key = t.jti || t.fingerprint;
      tokens.append(el("li", {},
        t.role + " " + t.kind + " ",
        el("button", { type: "button", class: "link mono", "data-token": key, onclick: () => openToken(key) },
          t.jti ? "jti " + t.jti : t.fingerprint.slice(0, 16) + "…"),
        t.verified ? el("span", { class: "verified" }, "verified") : el("span", { class: "unverified" }, t.invalid || "unverified")));
    }
    if (!tokens.children.length) tokens.append(el("li", { class: "muted" }, "none"));
    $("detail-json").textContent = JSON.stringify(e, null, 2);
    $("detail").hidden = false;
  }

  async function openToken(key) {
    let life;
    try { life = await api("/v1/tokens/" + encodeURIComponent(key)); } catch (err) {
      if (err.message !== "unauthorized") $("status").textContent = "Error: " + err.message;
      return;
    }
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
      const roles = (e.tokens || []).filter((t) => t.fingerprint === key || t.jti === key).map((t) => t.role);
      ol.append(el("li", {}, badge(e.outcome), " ", el("strong", {}, e.type), " ",
        roles.length ? "(" + roles.join(", ") + ") " : "(rotation) ",
        el("span", { class: "strong" }, e.app ? e.app.value : "—"), " · ",
        el("span", { class: "strong" }, actorText(e.actor) || "—"), " ",
        el("span", { class: "muted", title: e.time }, absolute(e.time) + " (" + relative(e.time) + ")"), " ",
        el("button", { type: "button", class: "link", onclick: () => openEvent(e.id) }, "open")));
    }
    $("token-life").hidden = false;
  }

  // ---- export ----
  async function exportAs(format) {
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
    const resp = await fetch("/v1/whoami", { headers: { Authorization: "Bearer " + t }, cache: "no-store" });
    if (resp.status === 401) { signOut("That token was not accepted."); return; }
    if (!resp.ok) { signOut("Sign-in failed: HTTP " + resp.status); return; }
    const me = await resp.json();
    if (!me.permissions.includes("read")) { signOut("That credential may not read events."); return; }
    showApp(me);
    loadFiltersFromHash();
    state.cursors = [];
    await load(null);
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
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.cursors = [];
      saveFiltersToHash();
      load(null);
    });
    $("reset-btn").addEventListener("click", () => {
      setFilters({});
      state.cursors = [];
      saveFiltersToHash();
      load(null);
    });
    $("failed-logins-btn").addEventListener("click", () => {
      setFilters({ type: "auth.login", outcome: "failure" });
      state.cursors = [];
      saveFiltersToHash();
      load(null);
    });
    $("older-btn").addEventListener("click", () => {
      if (!state.next) return;
      state.cursors.push(state.next);
      load(state.next);
    });
    $("newest-btn").addEventListener("click", () => { state.cursors = []; load(null); });
    $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
    $("token-close").addEventListener("click", () => { $("token-life").hidden = true; });
    for (const b of document.querySelectorAll("[data-export]")) {
      b.addEventListener("click", () => exportAs(b.getAttribute("data-export")));
    }
    if (token()) signIn(token()); else signOut("");
  }

  document.addEventListener("DOMContentLoaded", init);
})();
