// The audit dashboard: reads /api/audit/stats (same origin, session cookie) and draws SVG.
// No chart library: bars and axes are a few SVG elements; every text goes in as text.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const root = document.getElementById("dashboard");
const form = document.getElementById("controls");

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// {bucket -> {requests, denials, errors}} from the API's counts, for one upstream or all.
function series(counts, upstream) {
  const byBucket = new Map();
  for (const row of counts) {
    if (upstream && row.upstream_name !== upstream) continue;
    const entry = byBucket.get(row.bucket) || { requests: 0, denials: 0, errors: 0 };
    entry.requests += row.count;
    if (row.decision === "deny") entry.denials += row.count;
    if (row.status !== null && row.status >= 500) entry.errors += row.count;
    byBucket.set(row.bucket, entry);
  }
  return [...byBucket.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
}

function barChart(container, groups, keys, label) {
  const width = 1000, height = 260, left = 50, bottom = 40, top = 10;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const max = Math.max(1, ...groups.flatMap(([, values]) => keys.map((k) => values[k])));
  const plotHeight = height - bottom - top;
  const slot = (width - left) / Math.max(1, groups.length);
  const barWidth = Math.max(1, (slot * 0.8) / keys.length);
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    svg.append(el("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e5e7eb" }));
    svg.append(el("text", { x: left - 6, y: y + 3, "text-anchor": "end", class: "axis" }, String(Math.round(max * fraction))));
  }
  const every = Math.ceil(groups.length / 12);
  groups.forEach(([name, values], i) => {
    keys.forEach((key, k) => {
      const h = (values[key] / max) * plotHeight;
      const rect = el("rect", { x: left + i * slot + slot * 0.1 + k * barWidth, y: top + plotHeight - h,
                                width: barWidth, height: h, class: key });
      rect.append(el("title", {}, `${label(name)}: ${values[key]} ${key}`));
      svg.append(rect);
    });
    if (i % every === 0) {
      svg.append(el("text", { x: left + i * slot + slot / 2, y: height - bottom + 14, "text-anchor": "middle", class: "axis" }, label(name)));
    }
  });
  if (!groups.length) svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no gateway requests in this window"));
  container.replaceChildren(svg);
}

function timeLabel(bucket) {
  const when = new Date(bucket);
  const kind = form.elements.bucket.value;
  if (kind === "day") return when.toISOString().slice(5, 10);
  return when.toISOString().slice(kind === "minute" ? 11 : 5, 16).replace("T", " ");
}

function fillUpstreams(counts) {
  const select = form.elements.upstream;
  const names = [...new Set(counts.map((row) => row.upstream_name))].sort();
  const known = new Set([...select.options].map((option) => option.value));
  for (const name of names) if (!known.has(name)) select.add(new Option(name || "(none)", name));
}

function render(stats) {
  const upstream = form.elements.upstream.value;
  const time = series(stats.counts, upstream);
  const totals = time.reduce((sum, [, v]) => ({ requests: sum.requests + v.requests, denials: sum.denials + v.denials,
                                                errors: sum.errors + v.errors }), { requests: 0, denials: 0, errors: 0 });
  document.getElementById("total-requests").textContent = totals.requests;
  document.getElementById("total-denials").textContent = totals.denials;
  document.getElementById("total-errors").textContent = totals.errors;
  const ms = (v) => (v === null ? "–" : `${v.toFixed(1)}`);
  const { p50, p95, p99 } = stats.latency_ms;
  document.getElementById("latency").textContent = `${ms(p50)} / ${ms(p95)} / ${ms(p99)} ms`;
  barChart(document.getElementById("chart-time"), time, ["requests", "denials", "errors"], timeLabel);
  const perUpstream = new Map();
  for (const row of stats.counts) {
    const entry = perUpstream.get(row.upstream_name) || { requests: 0, denials: 0, errors: 0 };
    entry.requests += row.count;
    if (row.decision === "deny") entry.denials += row.count;
    if (row.status !== null && row.status >= 500) entry.errors += row.count;
    perUpstream.set(row.upstream_name, entry);
  }
  barChart(document.getElementById("chart-upstreams"), [...perUpstream.entries()].sort(), ["requests", "denials", "errors"],
           (name) => name || "(none)");
  const callers = document.querySelector("#top-callers tbody");
  callers.replaceChildren();
  for (const caller of stats.top_callers) {
    const row = callers.insertRow();
    cell(row, caller.actor_username || "(anonymous)");
    cell(row, caller.requests, "num");
    cell(row, caller.denied, "num");
    cell(row, caller.errors, "num");
  }
  const denials = document.querySelector("#recent-denials tbody");
  denials.replaceChildren();
  for (const denial of stats.recent_denials) {
    const row = denials.insertRow();
    cell(row, new Date(denial.occurred_at).toISOString().replace("T", " ").slice(0, 19));
    cell(row, denial.actor_username || "(anonymous)");
    cell(row, `${denial.method} /gw/${denial.upstream_name}${denial.path}`);
    const reason = cell(row, "");
    const link = document.createElement("a");
    link.href = `${root.dataset.eventsUrl}?request_id=${encodeURIComponent(denial.request_id)}`;
    link.textContent = denial.reason;
    reason.append(link);
    cell(row, denial.status ?? "", "num");
  }
}

// The read replica's state and lag, and where the figures came from (only with a replica).
function showReplica(body) {
  const line = document.getElementById("replica");
  line.hidden = body.replica === null || body.replica === undefined;
  if (line.hidden) return;
  const { state, lag_seconds: lag } = body.replica;
  const behind = lag === null ? "lag unknown" : `${lag} s behind`;
  line.textContent = `Replica: ${state} (${behind}); figures from the ${body.read_from === "replica" ? "replica" : "primary"}`;
  line.className = `replica-${state}`;
}

let latest = null;

async function load() {
  const status = document.getElementById("status");
  const hours = Number(form.elements.window.value);
  const after = new Date(Date.now() - hours * 3600 * 1000).toISOString();
  const query = new URLSearchParams({ bucket: form.elements.bucket.value, occurred_after: after });
  status.textContent = "Loading…";
  try {
    const response = await fetch(`${root.dataset.statsUrl}?${query}`, { headers: { Accept: "application/json" },
                                                                       credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(`${response.status} ${body.code}: ${body.detail}`);
    latest = body;
    fillUpstreams(body.counts);
    render(body);
    showReplica(body);
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    root.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `Could not load the statistics: ${error.message}`;
  }
}

form.elements.window.addEventListener("change", load);
form.elements.bucket.addEventListener("change", load);
form.elements.upstream.addEventListener("change", () => latest && render(latest));
load();
setInterval(load, 60000);
