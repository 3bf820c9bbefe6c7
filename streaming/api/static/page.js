// The live trading page: REST for the first picture, the three WebSockets for every change after it.
// No build step: plain browser JavaScript and the vendored uPlot.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const money = (x) => x == null ? "-" : x.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2});
  const pct = (x) => x == null ? "-" : (100 * x).toFixed(2) + "%";
  const state = {key: sessionStorage.getItem("quantlake-key") || "", sockets: [], updates: 0,
                 curve: {t: [], equity: [], drawdown: []}, charts: null, refresh: null};

  async function api(path, options = {}) {
    const response = await fetch("/api/v1" + path, {...options,
      headers: {"X-API-Key": state.key, "Content-Type": "application/json", ...(options.headers || {})}});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status} ${path}: ${JSON.stringify(body.detail ?? body)}`);
    return body;
  }

  function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

  function setState(value) {
    const el = $("trading-state");
    el.textContent = value; el.className = value;
  }

  function showPortfolio(p) {
    $("account").textContent = p.account;
    $("equity").textContent = money(p.equity);
    $("pnl").textContent = money(p.pnl) + " (" + pct(p.return) + ")";
    $("pnl").className = p.pnl < 0 ? "neg" : "pos";
    $("cash").textContent = money(p.cash);
    $("drawdown").textContent = pct(p.drawdown) + " / breaker " + pct(p.breaker_drawdown);
    $("exposure").textContent = pct(p.exposure_ratio);
    $("as-of").textContent = p.as_of || "-";
    setState(p.trading_state);
  }

  function rows(tbody, items, cells, max = 50) {
    tbody.innerHTML = "";
    for (const item of items.slice(0, max)) {
      const tr = document.createElement("tr");
      for (const value of cells(item)) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  function showPositions(list) {
    rows(document.querySelector("#positions tbody"), list, (p) => [p.symbol, p.qty.toFixed(2), p.avg_px_open.toFixed(4),
      p.last_px.toFixed(4), money(p.market_value), money(p.unrealized_pnl), money(p.realized_pnl)]);
    document.querySelector("#positions tbody").dataset.count = list.length;
  }

  const orderCells = (o) => [o.ts, o.symbol, o.side, Number(o.qty).toFixed(2), o.status, o.reason || o.limit || ""];
  const fillCells = (f) => [f.ts, f.symbol, f.side, Number(f.qty).toFixed(2), Number(f.price).toFixed(4), Number(f.fee).toFixed(2)];

  function prepend(tableId, cells, item, max = 50) {
    const tbody = document.querySelector(`#${tableId} tbody`);
    const tr = document.createElement("tr");
    for (const value of cells(item)) { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); }
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.children.length > max) tbody.removeChild(tbody.lastChild);
  }

  function makeCharts() {
    const width = Math.max(400, document.querySelector("main").clientWidth - 60);
    const axes = [{}, {size: 80}];
    const equity = new uPlot({width, height: 220, scales: {x: {time: true}}, axes,
      series: [{}, {label: "equity", stroke: "#2a6fdb", width: 1.5}]}, [[], []], $("equity-chart"));
    const percent = [{}, {size: 80, values: (u, ticks) => ticks.map((v) => (100 * v).toFixed(2) + "%")}];
    const drawdown = new uPlot({width, height: 120, scales: {x: {time: true}}, axes: percent,
      series: [{}, {label: "drawdown", stroke: "#c33", fill: "#c332", width: 1}]}, [[], []], $("drawdown-chart"));
    return {equity, drawdown};
  }

  function addPoint(row) {
    const c = state.curve;
    const t = Date.parse(row.ts.endsWith("Z") || row.ts.includes("+") ? row.ts : row.ts + "Z") / 1000;
    if (c.t.length && t <= c.t[c.t.length - 1]) return;
    const equity = Number(row.equity), peak = Number(row.peak_equity);
    c.t.push(t); c.equity.push(equity); c.drawdown.push(peak > 0 ? -(1 - equity / peak) : 0);
  }

  function redraw() {
    if (!state.charts) state.charts = makeCharts();
    state.charts.equity.setData([state.curve.t, state.curve.equity]);
    state.charts.drawdown.setData([state.curve.t, state.curve.drawdown]);
    $("equity-chart").dataset.points = state.curve.t.length;
  }

  // a burst of changes (one bar closes every position) refreshes the tables once
  function refreshSoon() {
    if (state.refresh) return;
    state.refresh = setTimeout(async () => {
      state.refresh = null;
      try { showPortfolio(await api("/portfolio")); showPositions(await api("/positions")); }
      catch (error) { showError(error); }
    }, 250);
  }

  function socket(stream, onMessage) {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/${stream}`;
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send(JSON.stringify({type: "auth", key: state.key}));
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "welcome") { $("conn").textContent = "live"; $("conn").className = "badge live"; return; }
      if (message.type === "heartbeat") return;
      state.updates += 1; $("updates").textContent = state.updates;
      onMessage(message);
    };
    ws.onclose = (event) => {
      $("conn").textContent = `offline (${event.code})`; $("conn").className = "badge";
      if (event.code === 4401 || event.code === 4403) { showError(`${stream}: ${event.reason}`); return; }
      if (state.sockets.includes(ws)) setTimeout(() => replace(ws, socket(stream, onMessage)), 2000);
    };
    state.sockets.push(ws);
    return ws;
  }

  function replace(old, fresh) { state.sockets = state.sockets.filter((s) => s !== old); }

  async function connect() {
    state.sockets.forEach((s) => { state.sockets = []; s.close(); });
    showError("");
    try {
      const [portfolio, positions, equity, orders, fills] = await Promise.all([api("/portfolio"), api("/positions"),
        api("/equity?last=5000"), api("/orders?limit=50"), api("/fills?limit=50")]);
      showPortfolio(portfolio); showPositions(positions);
      state.curve = {t: [], equity: [], drawdown: []};
      equity.forEach(addPoint); redraw();
      rows(document.querySelector("#orders tbody"), orders.orders, orderCells);
      rows(document.querySelector("#fills tbody"), fills.fills, fillCells);
    } catch (error) { showError(error); return; }
    const me = await api("/me").catch(() => ({scopes: []}));
    $("kill-switch").hidden = !me.scopes.includes("admin");
    socket("portfolio", (m) => {
      if (m.type === "equity") { addPoint(m); redraw(); }
      if (m.type === "trading_state") setState(m.state);
      refreshSoon();
    });
    socket("trades", (m) => {
      if (m.type === "fill") prepend("fills", fillCells, m);
      else if (m.type === "order" || m.type === "rejected") prepend("orders", orderCells,
        {...m, status: m.type === "rejected" ? "REJECTED" : "SENT", reason: m.reason});
    });
  }

  document.querySelectorAll("#kill-switch button").forEach((button) => button.addEventListener("click", async () => {
    try {
      const change = await api("/trading-state", {method: "POST",
        body: JSON.stringify({state: button.dataset.state, reason: "from the live page"})});
      setState(change.state); showError("");
    } catch (error) { showError(error); }
  }));

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("quantlake-key", state.key);
    connect();
  });
  if (state.key) connect();
})();
