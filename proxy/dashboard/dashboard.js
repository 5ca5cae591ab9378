// SPDX-License-Identifier: GPL-2.0-or-later
// sluice dashboard: polls /stats every 2 s and renders it. Rates are computed
// here from two successive counter readings, so the server keeps no history;
// the time between them is the server's own uptime difference, not the
// browser's clock, so network jitter does not distort them.
// Every value is written with textContent: decision records carry
// client-supplied text (addresses, reasons), never HTML.
"use strict";

const POLL_MS = 2000;
const VERDICTS = ["accepted", "rejected", "tempfailed", "discarded", "quarantined", "aborted"];
let prev = null;      // {uptime, messages} of the previous poll
let polls = 0;

function $(id) { return document.getElementById(id); }

function set(id, v) { const e = $(id); if (e) e.textContent = v; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillBody(table, rows, cols, empty) {
  const tb = $(table).tBodies[0];
  tb.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    cell(tr, empty, "muted").colSpan = cols;
    tb.appendChild(tr);
  }
  for (const r of rows) tb.appendChild(r);
}

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function fmtRate(x) { return x.toFixed(2); }

// Estimate a quantile from cumulative buckets, interpolating linearly inside
// the bucket (what Prometheus' histogram_quantile does).
function quantile(q, buckets, count) {
  if (!count) return null;
  const rank = q * count;
  let lowerBound = 0, lowerCount = 0;
  for (const b of buckets) {
    const le = b.le === "+Inf" ? Infinity : Number(b.le);
    if (b.count >= rank) {
      if (le === Infinity) return lowerBound;    // beyond the last bound
      const inBucket = b.count - lowerCount;
      const frac = inBucket > 0 ? (rank - lowerCount) / inBucket : 0;
      return lowerBound + (le - lowerBound) * frac;
    }
    lowerBound = le; lowerCount = b.count;
  }
  return lowerBound;
}

// All phases of one plugin merged into one histogram.
function mergePhases(phases) {
  let merged = null, sum = 0, count = 0;
  for (const name of Object.keys(phases || {})) {
    const h = phases[name];
    if (!merged) merged = h.buckets.map(b => ({le: b.le, count: 0}));
    h.buckets.forEach((b, i) => { merged[i].count += b.count; });
    sum += h.sum; count += h.count;
  }
  return {buckets: merged || [], sum: sum, count: count};
}

function ms(x) { return x === null ? "-" : (x * 1000).toFixed(2); }

function renderVerdicts(s, rates) {
  const total = VERDICTS.reduce((a, v) => a + (s.messages[v] || 0), 0);
  const rows = VERDICTS.map(v => {
    const tr = document.createElement("tr");
    cell(tr, v, "v-" + v);
    cell(tr, rates ? fmtRate(rates[v]) : "-", "n").id = "rate-" + v;
    cell(tr, s.messages[v] || 0, "n").id = "total-" + v;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = (total ? Math.round(100 * (s.messages[v] || 0) / total) : 0) + "%";
    cell(tr, "").appendChild(bar);
    return tr;
  });
  fillBody("verdicts", rows, 4, "");
  set("msg-total", total);
}

function renderPlugins(s) {
  const rows = (s.plugins || []).map(p => {
    const h = mergePhases(p.phases);
    const tr = document.createElement("tr");
    tr.dataset.plugin = p.name;
    cell(tr, p.name);
    cell(tr, h.count, "n");
    cell(tr, h.count ? ms(h.sum / h.count) : "-", "n");
    cell(tr, ms(quantile(0.5, h.buckets, h.count)), "n");
    cell(tr, ms(quantile(0.99, h.buckets, h.count)), "n");
    cell(tr, p.timeouts, "n");
    cell(tr, p.errors, "n");
    cell(tr, p.circuit_state_name + (p.circuit_trips ? " (" + p.circuit_trips + " trips)" : ""));
    return tr;
  });
  fillBody("plugins", rows, 8, "no plugins reported yet");
}

function renderRules(s) {
  const all = [];
  for (const c of s.counters || []) {
    const name = c.name.replace(/^sluice_/, "").replace(/_total$/, "") +
                 (c.plugin ? " (" + c.plugin + ")" : "");
    if (c.label === null) all.push({name: name, value: "", n: c.value});
    else for (const [v, n] of Object.entries(c.values)) all.push({name: name, value: v, n: n});
  }
  all.sort((a, b) => b.n - a.n);
  const rows = all.filter(x => x.n > 0).slice(0, 15).map(x => {
    const tr = document.createElement("tr");
    cell(tr, x.name);
    cell(tr, x.value);
    cell(tr, x.n, "n");
    return tr;
  });
  fillBody("rules", rows, 3, "none yet");
}

function pick(d, ...keys) {
  for (const k of keys) if (d[k] !== undefined && d[k] !== null) return d[k];
  return "";
}

function fmtTime(t) {
  if (typeof t === "number") return new Date(t * 1000).toLocaleTimeString();
  return String(t);
}

function renderDecisions(s) {
  const rows = (s.decisions || []).slice(0, 25).map(d => {
    const tr = document.createElement("tr");
    tr.title = JSON.stringify(d);
    cell(tr, fmtTime(pick(d, "time", "ts")));
    cell(tr, pick(d, "sid", "session"));
    cell(tr, pick(d, "client", "client_addr"));
    cell(tr, pick(d, "from", "sender"));
    const r = pick(d, "rcpts", "recipients");
    cell(tr, Array.isArray(r) ? r.join(", ") : r);
    const v = String(pick(d, "verdict"));
    cell(tr, v, "v-" + v);
    cell(tr, pick(d, "plugin", "decided_by", "decider"));
    cell(tr, pick(d, "reason", "text"), "reason");
    return tr;
  });
  fillBody("decisions", rows, 8, "none yet");
}

function render(s) {
  let rates = null;
  const dt = prev ? s.uptime_seconds - prev.uptime : 0;
  if (dt > 0) {
    rates = {};
    let all = 0;
    for (const v of VERDICTS) {
      rates[v] = Math.max(0, ((s.messages[v] || 0) - (prev.messages[v] || 0)) / dt);
      all += rates[v];
    }
    set("rate-all", fmtRate(all));
  }
  if (!prev || dt > 0) prev = {uptime: s.uptime_seconds, messages: Object.assign({}, s.messages)};

  set("version", "v" + s.version);
  set("uptime", fmtDuration(s.uptime_seconds));
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "not ready: " + s.ready_reason;
  ready.className = "state " + (s.ready ? "ok" : "bad");
  set("conn-current", s.connections.current);
  set("conn-total", s.connections.total);
  set("rcpt-total", s.recipients);
  set("uperr-total", Object.values(s.upstream_errors).reduce((a, b) => a + b, 0));
  renderVerdicts(s, rates);
  renderPlugins(s);
  renderRules(s);
  renderDecisions(s);
}

async function poll() {
  try {
    const r = await fetch("/stats", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    polls++;
    set("polls", polls);
    set("status", "live");
  } catch (e) {
    set("status", "error: " + e.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
