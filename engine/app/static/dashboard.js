// The dashboard page: one EventSource per (underlying, bucket); renders at most once per
// animation frame and never more than 4 times a second (the server coalesces too).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KEYS = ["net_gex", "zero_gamma", "call_wall", "put_wall", "abs_gamma_strike",
    "regime", "contracts_used", "zero_gamma_crossings"];
  const TAPE_MAX = 500;
  const MIN_RENDER_MS = 250;
  const charts = { profile: echarts.init($("profile")), strikes: echarts.init($("strikes")) };
  let source = null;
  let pending = null;
  let lastRender = 0;
  let timer = null;

  function cellText(key, v) {
    if (v === null || v === undefined) return "-";
    if (key === "net_gex") return RegimeCharts.money(v);
    if (key === "regime") return v;
    if (key === "contracts_used") return String(v);
    if (key === "zero_gamma_crossings") return v.map(RegimeCharts.fmt).join(", ") || "-";
    return RegimeCharts.fmt(v);
  }

  function renderLevels(msg) {
    const lv = msg.levels;
    $("asof").textContent = lv.asof;
    $("asof").dataset.value = lv.asof_ns;
    $("spot").textContent = RegimeCharts.fmt(lv.spot);
    $("spot").dataset.value = JSON.stringify(lv.spot);
    const body = $("levels").tBodies[0];
    body.innerHTML = "";
    for (const name of SETTINGS.buckets) {
      const b = lv.buckets[name];
      if (!b) continue;
      const tr = body.insertRow();
      tr.id = "lv-" + name;
      if (name === msg.bucket) tr.style.fontWeight = "bold";
      tr.insertCell().textContent = name;
      for (const key of KEYS) {
        const td = tr.insertCell();
        td.id = "lv-" + name + "-" + key;
        td.dataset.value = JSON.stringify(b[key]);
        td.textContent = cellText(key, b[key]);
        if (key === "regime" && b[key]) td.className = "regime-" + b[key];
      }
    }
    for (const chart of msg.charts) {
      charts[chart.kind].setOption(RegimeCharts.option(chart), true);
      $(chart.kind).dataset.drawn = lv.asof_ns;
      $(chart.kind).dataset.title = chart.title;
    }
  }

  function addEvents(events, replace) {
    const body = $("tape").tBodies[0];
    if (replace) body.innerHTML = "";
    for (const e of events) {
      const tr = body.insertRow(0);
      tr.className = "event";
      tr.dataset.id = e.id;
      tr.dataset.type = e.type;
      tr.dataset.bucket = e.bucket;
      const t = new Date(Math.floor(e.ts_event / 1e6)).toISOString();
      const cells = [t, e.type, e.bucket, e.direction || "-", RegimeCharts.fmt(e.level),
        RegimeCharts.fmt(e.spot), JSON.stringify(e.detail)];
      cells.forEach((text, j) => { const td = tr.insertCell(); td.textContent = text;
        td.className = ["time", "type", "bucket", "direction", "level", "spot", "detail"][j]; });
    }
    while (body.rows.length > TAPE_MAX) body.deleteRow(body.rows.length - 1);
  }

  function setStatus(s) {
    const el = $("status");
    el.textContent = s.state;
    el.className = s.state;
    const stale = $("stale");
    stale.hidden = !s.stale;
    stale.textContent = s.stale ? "stale: no new levels for " + Math.round(s.age_s) + " s" : "";
  }

  function schedule(msg) {
    pending = msg;  // only the latest levels are drawn
    if (timer !== null) return;
    const wait = Math.max(0, lastRender + MIN_RENDER_MS - Date.now());
    timer = setTimeout(() => requestAnimationFrame(() => {
      timer = null;
      lastRender = Date.now();
      if (pending) { renderLevels(pending); pending = null; }
    }), wait);
  }

  function connect() {
    if (source) source.close();
    const u = $("underlying").value;
    if (!u) return;
    const b = $("bucket").value;
    source = new EventSource("events?underlying=" + encodeURIComponent(u) + "&bucket=" + b);
    source.addEventListener("tape", (m) => addEvents(JSON.parse(m.data), true));
    source.addEventListener("events", (m) => addEvents(JSON.parse(m.data), false));
    source.addEventListener("levels", (m) => schedule(JSON.parse(m.data)));
    source.addEventListener("status", (m) => setStatus(JSON.parse(m.data)));
    source.onerror = () => setStatus({ state: "reconnecting", stale: true, age_s: 0 });
  }

  async function refreshUnderlyings() {
    try {
      const r = await fetch("api/underlyings");
      if (!r.ok) throw new Error(String(r.status));
      const names = (await r.json()).underlyings;
      const sel = $("underlying");
      const have = Array.from(sel.options).map((o) => o.value);
      for (const n of names) if (!have.includes(n)) sel.add(new Option(n, n));
      if (!source && sel.value) connect();
    } catch (err) {
      if (!source) setStatus({ state: "reconnecting", stale: true, age_s: 0 });
    }
  }

  for (const b of SETTINGS.buckets) $("bucket").add(new Option(b, b));
  $("underlying").addEventListener("change", connect);
  $("bucket").addEventListener("change", connect);
  window.addEventListener("resize", () => { charts.profile.resize(); charts.strikes.resize(); });
  refreshUnderlyings();
  setInterval(refreshUnderlyings, 2000);
})();
