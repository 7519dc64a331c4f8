// labrelay dashboard: polls the JSON API and redraws the page.
// No libraries; every value from the API is set as text (textContent) or
// as an attribute, never parsed as HTML (proxy names come from clients).
"use strict";

const REFRESH_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store", credentials: "same-origin"});
  if (!response.ok) {
    throw new Error(path + ": HTTP " + response.status);
  }
  return response.json();
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function formatDuration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + s + "s";
  return s + "s";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function numberCell(row, field, value, text) {
  const td = cell(row, text, "num");
  td.dataset.field = field;
  td.dataset.value = String(value);
  return td;
}

function fillTable(tableId, emptyId, items, build) {
  const body = $(tableId).tBodies[0];
  const rows = items.map(build);
  body.replaceChildren(...rows);
  $(emptyId).hidden = items.length > 0;
}

function target(proxy, info) {
  const conf = proxy.conf;
  if (!conf) return "–";
  if (conf.remote_port !== undefined) return ":" + conf.remote_port;
  const domains = (conf.custom_domains || []).slice();
  if (conf.subdomain) {
    domains.push(info.subdomain_host ? conf.subdomain + "." + info.subdomain_host : conf.subdomain);
  }
  let text = domains.join(", ");
  const locations = (conf.locations || []).filter(l => l && l !== "/");
  if (locations.length) text += " (" + locations.join(", ") + ")";
  return text || "–";
}

function renderSummary(info, clients) {
  const online = Object.values(info.proxy_type_count || {}).reduce((a, b) => a + b, 0);
  $("sum-clients").textContent = String(clients.length);
  $("sum-proxies").textContent = String(online);
  $("sum-conns").textContent = String(info.cur_conns);
  $("sum-in").textContent = formatBytes(info.total_traffic_in);
  $("sum-in").dataset.value = String(info.total_traffic_in);
  $("sum-out").textContent = formatBytes(info.total_traffic_out);
  $("sum-out").dataset.value = String(info.total_traffic_out);
  $("server").textContent = (info.labrelay_version || "frp " + info.version) +
    " · bind port " + info.bind_port +
    (info.vhost_http_port ? " · http " + info.vhost_http_port : "") +
    (info.subdomain_host ? " · " + info.subdomain_host : "");
}

function renderClients(clients) {
  fillTable("clients", "clients-empty", clients, client => {
    const row = document.createElement("tr");
    row.dataset.client = client.address;
    cell(row, client.address);
    cell(row, client.user || "–");
    cell(row, client.version);
    cell(row, [client.hostname, client.os, client.arch].filter(Boolean).join(" · ") || "–");
    numberCell(row, "uptime_seconds", client.uptime_seconds, formatDuration(client.uptime_seconds));
    cell(row, client.proxies.join(", ") || "–");
    return row;
  });
}

function renderProxies(proxies, info) {
  fillTable("proxies", "proxies-empty", proxies, proxy => {
    const row = document.createElement("tr");
    row.dataset.proxy = proxy.name;
    row.className = proxy.status;
    cell(row, proxy.name, "name");
    cell(row, proxy.type);
    cell(row, target(proxy, info));
    const status = cell(row, "");
    const pill = document.createElement("span");
    pill.className = "pill " + proxy.status;
    pill.textContent = proxy.status;
    status.appendChild(pill);
    status.dataset.field = "status";
    numberCell(row, "cur_conns", proxy.cur_conns, String(proxy.cur_conns));
    numberCell(row, "today_traffic_in", proxy.today_traffic_in, formatBytes(proxy.today_traffic_in));
    numberCell(row, "today_traffic_out", proxy.today_traffic_out, formatBytes(proxy.today_traffic_out));
    cell(row, proxy.status === "online" ? "started " + proxy.last_start_time
                                        : "closed " + (proxy.last_close_time || "–"));
    return row;
  });
}

// One bar per bucket: "in" rises from the middle line, "out" hangs below.
function barsPath(values, scale, width, middle, up) {
  let d = "";
  values.forEach((v, i) => {
    if (!v) return;
    const h = Math.max(v * scale, 0.75);
    d += "M" + (i * width) + "," + middle + "v" + (up ? -h : h) + "h" + width + "v" + (up ? h : -h) + "z";
  });
  return d;
}

function svg(tag, attributes) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  return element;
}

function plot(entry, bucketSeconds) {
  const n = entry.traffic_in.length, barWidth = 2, width = n * barWidth, height = 80;
  const middle = height / 2, room = middle - 4;
  const peak = Math.max(1, ...entry.traffic_in, ...entry.traffic_out);
  const scale = room / peak;
  const figure = document.createElement("figure");
  figure.className = "plot";
  figure.dataset.proxy = entry.name;
  const caption = document.createElement("figcaption");
  const title = document.createElement("strong");
  title.textContent = entry.name;
  caption.appendChild(title);
  const total = (a) => a.reduce((x, y) => x + y, 0);
  const kind = document.createElement("span");
  kind.className = "muted";
  kind.textContent = " " + entry.type;
  caption.appendChild(kind);
  const totals = document.createElement("span");
  totals.className = "totals";
  totals.textContent = "in " + formatBytes(total(entry.traffic_in)) +
    " · out " + formatBytes(total(entry.traffic_out));
  caption.appendChild(totals);
  figure.appendChild(caption);
  const picture = svg("svg", {viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none",
                              role: "img", "aria-label": "traffic of " + entry.name});
  const tip = svg("title", {});
  tip.textContent = "busiest " + (bucketSeconds / 60) + " minutes: " +
    formatBytes(peak === 1 ? 0 : peak);
  picture.appendChild(tip);
  picture.appendChild(svg("rect", {x: 0, y: 0, width: width, height: height, class: "bg"}));
  for (let h = 0; h <= 24; h += 6) {
    const x = Math.min(h * 3600 / bucketSeconds * barWidth, width - 0.5);
    picture.appendChild(svg("line", {x1: x, x2: x, y1: 0, y2: height, class: "grid"}));
  }
  picture.appendChild(svg("path", {d: barsPath(entry.traffic_in, scale, barWidth, middle, true), class: "in"}));
  picture.appendChild(svg("path", {d: barsPath(entry.traffic_out, scale, barWidth, middle, false), class: "out"}));
  picture.appendChild(svg("line", {x1: 0, x2: width, y1: middle, y2: middle, class: "axis"}));
  figure.appendChild(picture);
  const axis = document.createElement("div");
  axis.className = "axis-labels muted";
  for (const label of ["24 h ago", "18 h", "12 h", "6 h", "now"]) {
    const span = document.createElement("span");
    span.textContent = label;
    axis.appendChild(span);
  }
  figure.appendChild(axis);
  return figure;
}

// Proxies listed per type (the API's largest page).
const PROXIES_PAGE = 100;

// /api/history is paged: the plots of PLOTS_PAGE proxies at a time.
const PLOTS_PAGE = 20;
let plotsOffset = 0;

function historyPath() {
  return "/api/history?offset=" + plotsOffset + "&limit=" + PLOTS_PAGE;
}

function renderPlots(history) {
  $("bucket").textContent = (history.bucket_seconds / 60) + " minutes";
  $("plots").replaceChildren(...history.proxies.map(entry => plot(entry, history.bucket_seconds)));
  const shown = history.proxies.length;
  if (!shown && history.offset > 0) {
    // names were forgotten since: the next refresh shows the last page
    plotsOffset = Math.max(0, Math.floor((history.total - 1) / PLOTS_PAGE) * PLOTS_PAGE);
  }
  $("plots-pager").hidden = history.total <= shown && history.offset === 0;
  $("plots-range").textContent = shown ? "proxies " + (history.offset + 1) + "–" +
    (history.offset + shown) + " of " + history.total : "";
  $("plots-prev").disabled = history.offset === 0;
  $("plots-next").disabled = history.offset + shown >= history.total;
}

async function turnPlots(delta) {
  plotsOffset = Math.max(0, plotsOffset + delta);
  try {
    renderPlots(await getJSON(historyPath()));
  } catch (error) {
    $("error").textContent = "Cannot reach the relay: " + error.message;
    $("error").hidden = false;
  }
}

$("plots-prev").addEventListener("click", () => turnPlots(-PLOTS_PAGE));
$("plots-next").addEventListener("click", () => turnPlots(PLOTS_PAGE));

async function refresh() {
  try {
    const [info, clients, history] = await Promise.all([
      getJSON("/api/serverinfo"), getJSON("/api/clients"), getJSON(historyPath())]);
    const types = Object.keys(info.proxy_type_count || {}).sort();
    // one page per type: a relay may remember thousands of names
    const lists = await Promise.all(types.map(t =>
      getJSON("/api/proxy/" + encodeURIComponent(t) + "?limit=" + PROXIES_PAGE)));
    const proxies = [];
    const hidden = [];
    types.forEach((type, i) => {
      for (const proxy of lists[i].proxies) proxies.push(Object.assign({type: type}, proxy));
      const more = lists[i].total - lists[i].proxies.length;
      if (more > 0) hidden.push(more + " more " + type);
    });
    $("proxies-more").hidden = hidden.length === 0;
    $("proxies-more").textContent = hidden.length ?
      "Not shown: " + hidden.join(", ") + " (first " + PROXIES_PAGE + " of each type by name)." : "";
    renderSummary(info, clients.clients);
    renderClients(clients.clients);
    renderProxies(proxies, info);
    renderPlots(history);
    $("error").hidden = true;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("error").textContent = "Cannot reach the relay: " + error.message;
    $("error").hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
