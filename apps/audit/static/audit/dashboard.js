// The audit dashboard: reads /api/audit/stats (same origin, session cookie) and draws its time
// series with uPlot (vendor/uplot, loaded before this file); every text goes in as text.
// A request's causal chain (/api/audit/events/<id>/chain/) opens from the recent denials.
// The recent alerts come from /api/alerts/ (the alerts app; no panel when the page names no URL).
"use strict";

const root = document.getElementById("dashboard");
const form = document.getElementById("controls");
const STEP = { minute: 60, hour: 3600, day: 86400 };  // seconds per bucket, to fill the empty ones
const COLOURS = { requests: "#4f7cff", denials: "#f5a524", errors: "#e5484d" };
const PALETTE = ["#4f7cff", "#f5a524", "#e5484d", "#30a46c", "#8e4ec6", "#12a594", "#d6409f", "#5b6475"];
const MAX_UPSTREAM_SERIES = 7;  // more upstreams than this: the rest are summed as "(others)"
const charts = {};

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function seconds(iso) {
  return Math.round(new Date(iso).getTime() / 1000);
}

function utc(iso) {
  return new Date(iso).toISOString().replace("T", " ").slice(0, 19);
}

// The x values: every bucket from the window's start to its end (empty buckets count 0), plus
// any bucket the API returned off that grid.
function buckets(stats, counts) {
  const present = [...new Set(counts.map((row) => seconds(row.bucket)))].sort((a, b) => a - b);
  const step = STEP[stats.bucket];
  const xs = new Set(present);
  if (step && present.length) {
    const from = seconds(stats.from), to = seconds(stats.to), anchor = present[0];
    const start = anchor - Math.floor((anchor - from) / step) * step;
    if ((to - start) / step < 50000) for (let x = start; x <= to; x += step) xs.add(x);
  }
  return [...xs].sort((a, b) => a - b);
}

// uPlot's columns: [xs, requests, denials, errors] for one upstream or all.
function outcomeData(stats, upstream) {
  const counts = stats.counts.filter((row) => !upstream || row.upstream_name === upstream);
  const xs = buckets(stats, counts);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = [xs, xs.map(() => 0), xs.map(() => 0), xs.map(() => 0)];
  for (const row of counts) {
    const i = index.get(seconds(row.bucket));
    columns[1][i] += row.count;
    if (row.decision === "deny") columns[2][i] += row.count;
    if (row.status !== null && row.status >= 500) columns[3][i] += row.count;
  }
  return columns;
}

// Requests per upstream per bucket: the busiest upstreams, the rest as "(others)".
function upstreamData(stats) {
  const totals = new Map();
  for (const row of stats.counts) totals.set(row.upstream_name, (totals.get(row.upstream_name) || 0) + row.count);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([name]) => name);
  const shown = ranked.slice(0, ranked.length > MAX_UPSTREAM_SERIES + 1 ? MAX_UPSTREAM_SERIES : ranked.length);
  const names = shown.map((name) => name || "(none)");
  if (shown.length < ranked.length) names.push("(others)");
  const xs = buckets(stats, stats.counts);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = [xs, ...names.map(() => xs.map(() => 0))];
  for (const row of stats.counts) {
    const k = shown.indexOf(row.upstream_name);
    columns[1 + (k === -1 ? shown.length : k)][index.get(seconds(row.bucket))] += row.count;
  }
  return { names, columns };
}

function size(container) {
  return { width: Math.max(300, container.clientWidth), height: 260 };
}

// One chart per container, made again only when its series change; a refresh keeps the zoom.
function plot(id, names, colours, data) {
  const container = document.getElementById(id);
  const key = names.join("\u0000");
  const chart = charts[id];
  if (chart && chart.key === key) {
    const x = chart.u.scales.x, old = chart.u.data[0];
    const zoomed = old.length && (x.min > old[0] || x.max < old[old.length - 1]);
    chart.u.setData(data);
    if (zoomed && data[0].length) chart.u.setScale("x", { min: x.min, max: x.max });
    container.classList.toggle("empty", !data[0].length);
    return;
  }
  if (chart) chart.u.destroy();
  const options = {
    ...size(container),
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),  // UTC, like the tables
    cursor: { drag: { x: true, y: false, setScale: true } },  // drag to zoom; double-click resets
    scales: { x: { time: true } },
    hooks: { setScale: [(u, scale) => scale === "x" && noteZoom(u, container)] },
    axes: [{}, { label: "requests per bucket", size: 60 }],
    series: [{ label: "time (UTC)" }, ...names.map((name, i) => ({
      label: name, stroke: colours[i], fill: `${colours[i]}1a`, width: 1.5, points: { size: 5 },
      value: (u, v) => (v === null || v === undefined ? "--" : String(v)),
    }))],
  };
  charts[id] = { key, u: new uPlot(options, data, container) };
  container.classList.toggle("empty", !data[0].length);
}

// Whether the x axis shows less than all the buckets, on the container (for the browser test).
function noteZoom(u, container) {
  const xs = u.data[0], { min, max } = u.scales.x;
  container.dataset.zoomed = String(xs.length > 1 && (min > xs[0] || max < xs[xs.length - 1]));
}

function resetZoom(id) {
  const chart = charts[id];
  if (!chart || !chart.u.data[0].length) return;
  const xs = chart.u.data[0];
  chart.u.setScale("x", { min: xs[0], max: xs[xs.length - 1] });
}

function fillUpstreams(counts) {
  const select = form.elements.upstream;
  const names = [...new Set(counts.map((row) => row.upstream_name))].sort();
  const known = new Set([...select.options].map((option) => option.value));
  for (const name of names) if (!known.has(name)) select.add(new Option(name || "(none)", name));
}

function render(stats) {
  const upstream = form.elements.upstream.value;
  const outcomes = outcomeData(stats, upstream);
  const sum = (column) => column.reduce((a, b) => a + b, 0);
  document.getElementById("total-requests").textContent = sum(outcomes[1]);
  document.getElementById("total-denials").textContent = sum(outcomes[2]);
  document.getElementById("total-errors").textContent = sum(outcomes[3]);
  const ms = (v) => (v === null ? "–" : `${v.toFixed(1)}`);
  const { p50, p95, p99 } = stats.latency_ms;
  document.getElementById("latency").textContent = `${ms(p50)} / ${ms(p95)} / ${ms(p99)} ms`;
  plot("chart-time", ["requests", "denials", "errors"], [COLOURS.requests, COLOURS.denials, COLOURS.errors],
       outcomes);
  const perUpstream = upstreamData(stats);
  plot("chart-upstreams", perUpstream.names, perUpstream.names.map((_, i) => PALETTE[i % PALETTE.length]),
       perUpstream.columns);
  const totals = new Map();
  for (const row of stats.counts) {
    const entry = totals.get(row.upstream_name) || { requests: 0, denials: 0, errors: 0 };
    entry.requests += row.count;
    if (row.decision === "deny") entry.denials += row.count;
    if (row.status !== null && row.status >= 500) entry.errors += row.count;
    totals.set(row.upstream_name, entry);
  }
  const upstreams = document.querySelector("#upstream-totals tbody");
  upstreams.replaceChildren();
  for (const [name, entry] of [...totals.entries()].sort()) {
    const row = upstreams.insertRow();
    cell(row, name || "(none)");
    cell(row, entry.requests, "num");
    cell(row, entry.denials, "num");
    cell(row, entry.errors, "num");
  }
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
    cell(row, utc(denial.occurred_at));
    cell(row, denial.actor_username || "(anonymous)");
    cell(row, `${denial.method} /gw/${denial.upstream_name}${denial.path}`);
    const reason = cell(row, "");
    const link = document.createElement("a");
    link.href = `${root.dataset.eventsUrl}?request_id=${encodeURIComponent(denial.request_id)}`;
    link.textContent = denial.reason;
    reason.append(link);
    cell(row, denial.status ?? "", "num");
    const chain = cell(row, "");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chain-open";
    button.dataset.eventId = denial.id;
    button.title = "Show the chain of requests this one belongs to";
    button.textContent = denial.request_id;
    chain.append(button);
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

// One event of a chain as a line of text: what, who, the outcome, when and how long.
function describe(event, rootTime) {
  const outcome = [event.decision || "no decision", event.reason, event.status ?? event.error].filter((v) => v !== "" && v !== null && v !== undefined);
  const offset = Math.round(new Date(event.occurred_at).getTime() - rootTime);
  const duration = event.duration_ms === null || event.duration_ms === undefined ? "" : ` · ${event.duration_ms} ms`;
  return `${event.method} /gw/${event.upstream_name}${event.path} · ${event.actor_username || "(anonymous)"} · `
       + `${outcome.join(" ")} · ${utc(event.occurred_at)} (+${offset} ms)${duration}`;
}

function chainList(node, requested, rootTime) {
  const item = document.createElement("li");
  const line = document.createElement("span");
  line.className = `chain-node decision-${node.event.decision || "none"}${node.event.id === requested ? " requested" : ""}`;
  line.dataset.eventId = node.event.id;
  const id = document.createElement("code");
  id.textContent = `#${node.event.id} ${node.event.request_id}`;
  line.append(id, ` ${describe(node.event, rootTime)}`);
  item.append(line);
  if (node.children.length) {
    const list = document.createElement("ul");
    for (const child of node.children) list.append(chainList(child, requested, rootTime));
    item.append(list);
  }
  return item;
}

async function showChain(eventId) {
  const section = document.getElementById("chain");
  const status = document.getElementById("chain-status");
  const tree = document.getElementById("chain-tree");
  section.hidden = false;
  section.dataset.loaded = "false";
  status.textContent = `Loading the chain of event ${eventId}…`;
  tree.replaceChildren();
  try {
    const response = await fetch(`${root.dataset.eventsUrl}${encodeURIComponent(eventId)}/chain/`,
                                 { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(`${response.status} ${body.code}: ${body.detail}`);
    const notes = [`${body.count} event${body.count === 1 ? "" : "s"}, from the request ${body.root}`];
    if (body.tree.event.parent_event_id !== null) notes.push("its parent is purged or not yours to see");
    if (body.truncated) notes.push("some events were left out (too deep or too many)");
    if (body.looped) notes.push("a parent link led back into the tree: run audit_verify");
    status.textContent = `Chain of event ${body.requested}: ${notes.join("; ")}.`;
    const list = document.createElement("ul");
    list.append(chainList(body.tree, body.requested, new Date(body.tree.event.occurred_at).getTime()));
    tree.append(list);
    section.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `Could not load the chain: ${error.message}`;
  }
}

const ALERTS_SHOWN = 20;

// Delivered, or why not yet: an alert stays "not delivered" until the webhook answers 2xx.
function deliveryText(alert) {
  if (alert.delivered) return `yes, ${utc(alert.delivered_at)}`;
  if (!alert.attempts) return "not yet";
  return `no (${alert.attempts} attempt${alert.attempts === 1 ? "" : "s"}: ${alert.last_error})`;
}

async function loadAlerts() {
  const section = document.getElementById("alerts");
  if (!root.dataset.alertsUrl) return;
  section.hidden = false;
  const status = document.getElementById("alerts-status");
  try {
    const response = await fetch(`${root.dataset.alertsUrl}?page_size=${ALERTS_SHOWN}`,
                                 { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(`${response.status} ${body.code}: ${body.detail}`);
    const rows = document.querySelector("#alerts-table tbody");
    rows.replaceChildren();
    for (const alert of body.results) {
      const row = rows.insertRow();
      row.className = alert.delivered ? "alert-delivered" : "alert-pending";
      row.dataset.alertId = alert.id;
      cell(row, utc(alert.fired_at));
      cell(row, alert.kind);
      cell(row, alert.rule_name);
      cell(row, alert.subject);
      cell(row, deliveryText(alert), "delivery");
    }
    status.textContent = body.results.length ? "" : "none";
    section.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `could not load the alerts: ${error.message}`;
  }
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
for (const button of document.querySelectorAll("button.reset-zoom")) {
  button.addEventListener("click", () => resetZoom(button.dataset.chart));
}
document.querySelector("#recent-denials tbody").addEventListener("click", (event) => {
  const button = event.target.closest("button.chain-open");
  if (button) showChain(button.dataset.eventId);
});
document.getElementById("chain-close").addEventListener("click", () => { document.getElementById("chain").hidden = true; });
window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(charts)) chart.u.setSize(size(document.getElementById(id)));
});
load();
loadAlerts();
setInterval(load, 60000);
setInterval(loadAlerts, 60000);
