// Junction's operator console. Reads the daemon's admin API (the live figures every
// second, the rest every few seconds) and calls it for the actions.
//
// Rules this file keeps (the daemon's Content-Security-Policy enforces the first):
// - No inline script or style; no HTML is ever built from strings: every element is made
//   with createElement and filled with textContent, so names from the configuration and
//   anything else the daemon sends are shown as text, never run.
// - The admin token lives in this tab's sessionStorage and goes out only as the
//   Authorization header of requests to this origin; never in a URL.
"use strict";

(function () {
  const TOKEN_KEY = "junction.adminToken";
  const LIVE_EVERY_MS = 1000;
  const VIEWS_EVERY_MS = 3000;
  const HISTORY_SECONDS = 900;
  const DECLINE_ROWS_MAX = 100;
  const WINDOW_ROWS_MAX = 30;

  // What the ISO 8583 codes the switch answers mean, for people (engine/src/codes.rs).
  const CODE_MEANINGS = {
    "05": "do not honour",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card",
    "25": "original not found",
    "30": "format error",
    "51": "insufficient funds",
    "54": "expired card",
    "57": "not permitted",
    "61": "amount limit",
    "63": "security violation",
    "65": "count limit",
    "91": "unavailable",
    "94": "duplicate",
    "96": "system malfunction",
  };

  const $ = (id) => document.getElementById(id);

  // An element with attributes and children; strings become text nodes.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-")) node.setAttribute(name, String(value));
      else node[name] = value;
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replaceRows(tbody, rows, emptyText, columns) {
    if (rows.length === 0) {
      rows = [el("tr", { class: "empty" }, el("td", { colSpan: columns, text: emptyText }))];
    }
    tbody.replaceChildren(...rows);
  }

  // ---- the token and the API ---------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  // What the daemon says the tab's token allows: "none", "read" or "admin".
  let access = "none";

  function showTokenState() {
    const text = { admin: "admin: views and actions", read: "read: views only", none: "set for this tab" };
    $("token-state").textContent = token() ? text[access] : "not set";
    $("token-forget").disabled = !token();
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(response.status, error.code || "", error.message || response.statusText);
    }
    return data;
  }

  function notify(text, kind) {
    const notice = $("notice");
    notice.textContent = text;
    notice.dataset.kind = kind || "info";
    notice.hidden = false;
  }

  function refusal(error) {
    if (error.status === 401) {
      return "Refused by the daemon: this action needs the admin token (HTTP 401). Set it above.";
    }
    if (error.status === 403) {
      return "Refused by the daemon: the read token cannot change anything; this action needs the admin token (HTTP 403).";
    }
    return "Refused by the daemon: " + error.message + " (HTTP " + error.status + ").";
  }

  // ---- formatting ----------------------------------------------------------------------

  function clock(ms) {
    return new Date(ms).toLocaleTimeString("en-GB");
  }

  function dateTime(ms) {
    const d = new Date(ms);
    return d.toLocaleDateString("en-CA") + " " + d.toLocaleTimeString("en-GB");
  }

  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function count(n) {
    return Number(n).toLocaleString("en-US");
  }

  function milliseconds(us) {
    if (us === null || us === undefined) return "–";
    const ms = us / 1000;
    return ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0);
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + " MiB";
    return (n / 1024 / 1024 / 1024).toFixed(2) + " GiB";
  }

  // Minor units (a decimal string) from what a person typed in major units, with the
  // currency's exponent; null if it is not a plain non-negative amount. No floats.
  function minorUnits(text, exponent) {
    const match = /^\s*(\d+)(?:\.(\d*))?\s*$/.exec(text.replace(/,/g, ""));
    if (!match) return null;
    const fraction = match[2] || "";
    if (fraction.length > exponent) return null;
    const digits = (match[1] + fraction.padEnd(exponent, "0")).replace(/^0+(?=\d)/, "");
    return digits.length > 19 ? null : digits;
  }

  // ---- charts --------------------------------------------------------------------------

  const series = { t: [], answers: [], declined: [], p50: [], p90: [], p99: [] };
  let lastSecondMs = 0;
  let charts = null;

  function chartWidth(id) {
    return Math.max(300, $(id).clientWidth);
  }

  function makeCharts() {
    if (typeof uPlot !== "function") {
      notify("The chart library did not load; figures are shown without charts.", "error");
      return null;
    }
    const axis = { stroke: "#5f6b7a", grid: { stroke: "#edf1f5" }, ticks: { stroke: "#dde3ea" } };
    const throughput = new uPlot(
      {
        width: chartWidth("chart-throughput"),
        height: 240,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        series: [
          {},
          { label: "answers/s", stroke: "#1f6feb", fill: "rgba(31,111,235,0.08)", width: 2 },
          { label: "declined/s", stroke: "#d84315", width: 1.5 },
        ],
        axes: [axis, Object.assign({}, axis, { size: 60 })],
        cursor: { drag: { x: false, y: false } },
      },
      [series.t, series.answers, series.declined],
      $("chart-throughput"),
    );
    const latency = new uPlot(
      {
        width: chartWidth("chart-latency"),
        height: 240,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(0.1, (max || 0) * 1.1)] } },
        series: [
          {},
          { label: "p50 ms", stroke: "#2e7d32", width: 2 },
          { label: "p90 ms", stroke: "#b26a00", width: 1.5 },
          { label: "p99 ms", stroke: "#c62828", width: 1.5 },
        ],
        axes: [axis, Object.assign({}, axis, { size: 60 })],
        cursor: { drag: { x: false, y: false } },
      },
      [series.t, series.p50, series.p90, series.p99],
      $("chart-latency"),
    );
    window.addEventListener("resize", () => {
      throughput.setSize({ width: chartWidth("chart-throughput"), height: 240 });
      latency.setSize({ width: chartWidth("chart-latency"), height: 240 });
    });
    return { throughput, latency };
  }

  function addSeconds(seconds) {
    for (const s of seconds) {
      const perSecond = s.interval_ms > 0 ? 1000 / s.interval_ms : 1;
      series.t.push(s.unix_ms / 1000);
      series.answers.push(s.answers * perSecond);
      series.declined.push(s.declined * perSecond);
      const ms = (us) => (us === null || us === undefined ? null : us / 1000);
      series.p50.push(ms(s.latency_us_p50));
      series.p90.push(ms(s.latency_us_p90));
      series.p99.push(ms(s.latency_us_p99));
      lastSecondMs = Math.max(lastSecondMs, s.unix_ms);
      recentSeconds.push(s);
    }
    const excess = series.t.length - HISTORY_SECONDS;
    if (excess > 0) for (const key of Object.keys(series)) series[key].splice(0, excess);
    if (recentSeconds.length > 60) recentSeconds.splice(0, recentSeconds.length - 60);
    if (charts) {
      charts.throughput.setData([series.t, series.answers, series.declined]);
      charts.latency.setData([series.t, series.p50, series.p90, series.p99]);
    }
    $("chart-throughput").dataset.points = String(series.t.length);
    $("chart-latency").dataset.points = String(series.t.length);
  }

  // ---- live figures --------------------------------------------------------------------

  const recentSeconds = [];

  function barRows(container, rows, hint) {
    const max = Math.max(1, ...rows.map((row) => row.value));
    const nodes = [];
    for (const row of rows) {
      const fill = el("div", { class: "fill" });
      fill.style.width = ((100 * row.value) / max).toFixed(1) + "%";
      nodes.push(
        el("div", { class: row.wide ? "name wide" : "name", title: row.title || "", text: row.name }),
        el("div", { class: "track" }, fill),
        el("div", { class: "count", text: row.count }),
      );
    }
    if (rows.length === 0) nodes.push(el("div", { class: "hint", text: hint }));
    container.replaceChildren(...nodes);
  }

  function showLive(live) {
    $("switch-name").textContent = live.switch;
    $("version").textContent = live.version;
    const ledger = $("ledger-state");
    ledger.dataset.state = live.ledger.healthy ? "ok" : "failing";
    ledger.textContent = live.ledger.healthy ? "ledger ok" : "ledger failing";
    ledger.title = live.ledger.failure || "durable sequence " + live.ledger.durable_seq;

    addSeconds(live.seconds);
    const last = recentSeconds[recentSeconds.length - 1];
    if (last) {
      const perSecond = last.interval_ms > 0 ? (last.answers * 1000) / last.interval_ms : last.answers;
      $("tile-throughput").textContent = count(Math.round(perSecond));
      const latest = [...recentSeconds].reverse().find((s) => s.latency_us_p50 !== null);
      $("tile-latency").textContent = latest
        ? milliseconds(latest.latency_us_p50) + " / " + milliseconds(latest.latency_us_p99) + " ms"
        : "–";
    }
    const minute = recentSeconds.reduce(
      (sum, s) => ({ answers: sum.answers + s.answers, approved: sum.approved + s.approved }),
      { answers: 0, approved: 0 },
    );
    $("tile-approved").textContent =
      minute.answers > 0 ? ((100 * minute.approved) / minute.answers).toFixed(1) + " %" : "–";
    const total = Object.values(live.answers_by_code).reduce((a, b) => a + b, 0);
    $("tile-answers").textContent = count(total);
    $("tile-in-flight").textContent = count(live.requests_in_flight);
    $("tile-in-flight-max").textContent = "of " + count(live.requests_in_flight_max);
    $("tile-connections").textContent = count(live.connections_open);
    $("tile-window").textContent = "#" + live.ledger.current_window;
    $("tile-window-since").textContent = "since " + clock(live.window_opened_unix_s * 1000);

    // Decline codes: the last minute's, with the totals since start beside them.
    const lastMinute = {};
    for (const s of recentSeconds) {
      for (const [code, n] of Object.entries(s.declined_by_code)) lastMinute[code] = (lastMinute[code] || 0) + n;
    }
    const codes = Object.keys(live.answers_by_code).filter((code) => code !== "00");
    codes.sort((a, b) => (lastMinute[b] || 0) - (lastMinute[a] || 0) || live.answers_by_code[b] - live.answers_by_code[a]);
    barRows(
      $("decline-codes"),
      codes.map((code) => ({
        name: code + " " + (CODE_MEANINGS[code] || ""),
        title: code + ": " + (CODE_MEANINGS[code] || "code from an issuer"),
        value: lastMinute[code] || 0,
        count: count(lastMinute[code] || 0) + " · " + count(live.answers_by_code[code]),
        wide: true,
      })),
      "No declines since the daemon started.",
    );
    $("decline-codes").classList.add("reasons");
    const reasons = Object.entries(live.declines_by_reason).sort((a, b) => b[1] - a[1]);
    barRows(
      $("decline-reasons"),
      reasons.map(([reason, n]) => ({ name: reason.replace(/_/g, " "), value: n, count: count(n), wide: true })),
      "The engine has declined nothing since start.",
    );
    $("decline-reasons").classList.add("reasons");

    showDeclines(live);
  }

  function showDeclines(live) {
    const rows = live.recent_declines.slice(0, DECLINE_ROWS_MAX).map((d) => {
      const from = d.participant_name || (d.participant ? "participant " + d.participant : "not signed on");
      return el(
        "tr",
        {},
        el("td", { text: clock(d.unix_ms) }),
        el("td", {}, from, el("span", { class: "sub", text: d.interface + (d.mti ? " " + d.mti : "") })),
        el("td", { class: "card", text: d.card || "–" }),
        el("td", { class: "num", text: d.amount ? d.amount + " " + d.currency : String(d.amount_minor) }),
        el("td", { class: "code", text: d.code, title: CODE_MEANINGS[d.code] || "" }),
        el("td", { class: "reason", text: d.reason_text || "refused by the gateway" }),
        el("td", { class: "code" }, d.stan || "–", el("span", { class: "sub", text: d.rrn || "" })),
      );
    });
    replaceRows($("declines").tBodies[0], rows, "No declines yet.", 7);
    $("declines-note").textContent =
      "newest first" + (live.recent_declines_skipped ? ", " + count(live.recent_declines_skipped) + " not listed under load" : "");
  }

  async function refreshLive() {
    const state = $("connection-state");
    try {
      const live = await api("GET", "/v1/admin/console/live?since_unix_ms=" + lastSecondMs);
      access = live.access;
      showTokenState();
      showLive(live);
      state.dataset.state = "live";
      state.textContent = "live";
      state.title = "updated " + clock(live.now_unix_ms);
    } catch (error) {
      const refused = error instanceof ApiError && error.status === 401;
      state.dataset.state = refused ? "stale" : "down";
      state.textContent = refused ? "token refused" : "no answer";
      state.title = String(error.message || error);
    }
  }

  // ---- participants, positions, windows --------------------------------------------------

  function showParticipants(participants, connections) {
    const now = connections.now_unix_ms;
    const hosted = new Set(connections.hosted_issuers);
    const sessionsOf = new Map();
    const strangers = [];
    for (const s of connections.sessions) {
      if (s.participant === null) {
        strangers.push(s);
        continue;
      }
      if (!sessionsOf.has(s.participant)) sessionsOf.set(s.participant, []);
      sessionsOf.get(s.participant).push(s);
    }
    const linksOf = new Map();
    for (const link of connections.issuer_links) {
      if (!linksOf.has(link.issuer)) linksOf.set(link.issuer, []);
      linksOf.get(link.issuer).push(link);
    }
    const lastSeen = new Map(connections.last_seen.map((seen) => [seen.participant, seen.unix_ms]));
    const rows = participants.map((p) => {
      const sessions = sessionsOf.get(p.id) || [];
      const links = linksOf.get(p.id) || [];
      let state = "offline";
      let stateText = lastSeen.has(p.id) ? "offline since " + clock(lastSeen.get(p.id)) : "not connected";
      if (sessions.length > 0) {
        state = "signed-on";
        stateText = "signed on";
      } else if (p.role === "wallet") {
        state = "no-connection";
        stateText = "QR API (HTTP)";
      } else if (p.role === "switch") {
        state = "no-connection";
        stateText = "the switch itself";
      } else if (hosted.has(p.id)) {
        state = "offline-hosted";
        stateText = "host down";
      }
      const signedOn = sessions.map((s) => s.signed_on_unix_ms).filter((t) => t !== null);
      const echoes = sessions
        .map((s) => s.last_echo_unix_ms)
        .concat(links.map((l) => l.last_echo_answered_unix_ms))
        .filter((t) => t !== null && t !== undefined);
      let linkText = "–";
      if (hosted.has(p.id) || links.length > 0) {
        const up = links.filter((l) => l.healthy).length;
        linkText = up + " in rotation, " + (links.length - up) + " out";
      }
      if (p.suspended) {
        state = "suspended";
        stateText = "suspended" + (sessions.length ? ", signed on" : "");
      }
      let action = el("td", {});
      if (p.role !== "switch") {
        const button = el("button", {
          type: "button",
          class: "small action",
          text: p.suspended ? "Reinstate…" : "Suspend…",
        });
        button.addEventListener("click", () => suspension(p));
        action = el("td", {}, button);
      }
      return el(
        "tr",
        { "data-participant": p.id },
        el("td", { class: "num", text: String(p.id) }),
        el("td", { text: p.name }),
        el("td", { text: p.role.replace(/_/g, " ") }),
        el("td", {}, el("span", { class: "badge", "data-state": state, text: stateText })),
        el("td", { text: sessions.length ? sessions.map((s) => s.peer).join(", ") : "–" }),
        el("td", { text: signedOn.length ? ago(Math.min(...signedOn), now) : "–" }),
        el("td", { text: echoes.length ? ago(Math.max(...echoes), now) : sessions.length ? "none yet" : "–" }),
        el("td", { text: linkText }),
        action,
      );
    });
    if (strangers.length > 0) {
      rows.push(
        el(
          "tr",
          { class: "empty" },
          el("td", {
            colSpan: 9,
            text:
              strangers.length +
              " connection(s) not signed on: " +
              strangers.map((s) => s.peer + " (" + ago(s.connected_unix_ms, now) + ")").join(", "),
          }),
        ),
      );
    }
    replaceRows($("participants").tBodies[0], rows, "No participants.", 9);
  }

  function showPositions(view) {
    $("positions-window").textContent =
      "window #" + view.window + " (" + view.state + "), " + count(view.transfer_count) + " transfers";
    const rows = view.rows.map((row) => {
      const fill = el("div", { class: "fill" });
      const permille = row.cap_used_permille;
      fill.style.width = Math.min(100, permille / 10).toFixed(1) + "%";
      fill.dataset.level = permille >= 1000 ? "over" : permille >= 800 ? "high" : "ok";
      const change = el("button", { type: "button", class: "small action", text: "Change cap…" });
      change.addEventListener("click", () => changeCap(row));
      return el(
        "tr",
        { "data-participant": row.participant, "data-currency": row.currency },
        el("td", {}, row.name, el("span", { class: "sub", text: "#" + row.participant + " " + row.role.replace(/_/g, " ") })),
        el("td", { text: row.currency }),
        el("td", { class: "num", text: row.net }),
        el("td", { class: "num", text: row.cap === null ? "none" : row.cap }),
        el(
          "td",
          {},
          el("div", { class: "meter" }, el("div", { class: "track" }, fill), el("span", { class: "pct", text: (permille / 10).toFixed(1) + " %" })),
        ),
        el("td", { class: "num", text: count(row.debit_count + row.credit_count) }),
        el("td", {}, row.cap === null ? null : change),
      );
    });
    replaceRows($("positions").tBodies[0], rows, "No positions.", 7);
  }

  const filesOf = new Map();

  async function download(window, name) {
    try {
      const headers = {};
      if (token()) headers.Authorization = "Bearer " + token();
      const response = await fetch("/v1/admin/windows/" + window + "/files/" + encodeURIComponent(name), {
        headers,
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok) throw new ApiError(response.status, "", response.statusText);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: "window-" + String(window).padStart(8, "0") + "-" + name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      notify("Could not download " + name + ": " + error.message, "error");
    }
  }

  function verificationCell(files) {
    if (!files) return el("td", { text: "–" });
    const verdict = files.verification;
    if (!verdict) {
      return el("td", {}, el("span", { class: "badge", "data-state": "unchecked", "data-verification": "unchecked", text: "not checked since start" }));
    }
    const state = verdict.verified ? "verified" : "failed";
    return el(
      "td",
      {},
      el("span", { class: "badge", "data-state": state, "data-verification": state, text: state }),
      el("span", {
        class: "sub",
        text: verdict.verified
          ? verdict.files_checked + " files, " + bytes(verdict.bytes_checked) + ", " + clock(verdict.checked_unix_ms)
          : verdict.error || "",
      }),
    );
  }

  function showWindows(windows) {
    const list = windows.slice().sort((a, b) => b.window - a.window).slice(0, WINDOW_ROWS_MAX);
    const rows = list.map((w) => {
      const files = filesOf.get(w.window);
      const fileLinks = files
        ? el(
            "div",
            { class: "files" },
            ...files.files.concat([{ name: "manifest.json", bytes: 0 }]).map((file) => {
              const link = el("button", { type: "button", class: "link", text: file.name, title: file.bytes ? bytes(file.bytes) : "" });
              link.dataset.file = file.name;
              link.addEventListener("click", () => download(w.window, file.name));
              return link;
            }),
          )
        : w.state === "open"
          ? "–"
          : "being written…";
      const actions = el("td", {});
      if (w.state !== "open") {
        const again = el("button", { type: "button", class: "small action", text: "Verify again…" });
        again.addEventListener("click", () => verifyWindow(w.window));
        actions.append(again);
      }
      if (w.status === "files_written") {
        const settle = el("button", { type: "button", class: "small action", text: "Mark settled…" });
        settle.addEventListener("click", () => settleWindow(w.window));
        actions.append(" ", settle);
      }
      return el(
        "tr",
        { "data-window": w.window, "data-status": w.status },
        el("td", { class: "num", text: "#" + w.window }),
        el("td", {}, el("span", { class: "badge", "data-state": w.status, text: w.status.replace(/_/g, " ") })),
        el("td", { class: "num", text: count(w.transfer_count) }),
        el("td", { text: w.closed_at_ns ? dateTime(w.closed_at_ns / 1e6) : "–" }),
        el("td", {}, fileLinks),
        w.state === "open" ? el("td", { text: "–" }) : verificationCell(files),
        actions,
      );
    });
    replaceRows($("windows").tBodies[0], rows, "No windows.", 7);
  }

  async function refreshFiles(windows) {
    // Only windows whose folder is written (a window just closed has none for a moment).
    const written = windows.filter((w) => w.status === "files_written" || w.status === "settled");
    const closed = written.sort((a, b) => b.window - a.window).slice(0, WINDOW_ROWS_MAX);
    await Promise.all(
      closed.map(async (w) => {
        try {
          filesOf.set(w.window, await api("GET", "/v1/admin/windows/" + w.window + "/files"));
        } catch (_) {
          filesOf.delete(w.window);
        }
      }),
    );
  }

  async function refreshViews() {
    try {
      const [participants, connections, positions, windows] = await Promise.all([
        api("GET", "/v1/admin/participants"),
        api("GET", "/v1/admin/connections"),
        api("GET", "/v1/admin/console/positions"),
        api("GET", "/v1/admin/windows"),
      ]);
      showParticipants(participants.participants, connections);
      showPositions(positions);
      await refreshFiles(windows.windows);
      showWindows(windows.windows);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        notify("The daemon refused this token: type the read token or the admin token above.", "error");
      }
    }
  }

  // ---- actions: each one confirmed, each one the admin API's own call ---------------------

  // Shows the confirmation dialog; resolves to the typed value (or true), or null.
  function confirmAction({ title, text, field, initial }) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-field").hidden = !field;
    $("confirm-label").textContent = field || "";
    $("confirm-input").value = initial || "";
    $("confirm-token").textContent =
      access === "read"
        ? "This tab has the read token: the daemon will refuse (it needs the admin token)."
        : "This tab has no admin token: the daemon will refuse.";
    $("confirm-token").hidden = access === "admin";
    return new Promise((resolve) => {
      const done = (value) => {
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.removeEventListener("cancel", cancel);
        dialog.close();
        resolve(value);
      };
      const ok = () => done(field ? $("confirm-input").value : true);
      const cancel = () => done(null);
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.addEventListener("cancel", cancel);
      dialog.showModal();
      (field ? $("confirm-input") : $("confirm-cancel")).focus();
    });
  }

  async function act(describe, call) {
    try {
      const result = await call();
      notify(describe(result), "info");
    } catch (error) {
      notify(error instanceof ApiError ? refusal(error) : "The call failed: " + error.message, "error");
    }
    refreshViews();
  }

  async function closeWindow() {
    const live = await api("GET", "/v1/admin/console/live?since_unix_ms=" + Date.now()).catch(() => null);
    const current = live ? "#" + live.ledger.current_window : "the open window";
    const yes = await confirmAction({
      title: "Close settlement window " + current + "?",
      text:
        "Its net positions become final and its clearing files are written and verified. " +
        "Traffic keeps flowing into the next window. This cannot be undone.",
    });
    if (!yes) return;
    await act(
      (closed) => "Window #" + closed.window + " closed (" + count(closed.transfer_count) + " transfers); its files are being written.",
      () => api("POST", "/v1/admin/windows/close"),
    );
  }

  async function verifyWindow(window) {
    const yes = await confirmAction({
      title: "Verify window #" + window + "'s files again?",
      text: "Reads every file of its clearing folder and checks digests, totals and schemas, as `junction clearing verify` does.",
    });
    if (!yes) return;
    await act(
      (result) =>
        "Window #" + window + ": " + (result.verification.verified ? "files verified." : "files do NOT verify: " + result.verification.error),
      () => api("POST", "/v1/admin/windows/" + window + "/verify"),
    );
  }

  async function settleWindow(window) {
    const yes = await confirmAction({
      title: "Mark window #" + window + " settled?",
      text: "Say so only once the settlement bank has confirmed the net settlement of this window.",
    });
    if (!yes) return;
    await act(() => "Window #" + window + " marked settled.", () => api("POST", "/v1/admin/windows/" + window + "/settle"));
  }

  async function suspension(p) {
    const suspending = !p.suspended;
    const yes = await confirmAction({
      title: (suspending ? "Suspend " : "Reinstate ") + p.name + " (#" + p.id + ")?",
      text: suspending
        ? "Its new requests, and those for its cards or merchants, are declined (57, participant_suspended) from the next one. What it approved before still completes, reverses and settles."
        : "Its requests are authorized again from the next one.",
    });
    if (!yes) return;
    await act(
      () => p.name + (suspending ? " suspended." : " reinstated."),
      () => api("POST", "/v1/admin/participants/" + p.id + (suspending ? "/suspend" : "/reinstate")),
    );
  }

  async function changeCap(row) {
    const typed = await confirmAction({
      title: "Change " + row.name + "'s net debit cap in " + row.currency + "?",
      text: "Now " + row.cap + " " + row.currency + ". The new cap applies to the next payment; a participant already past it is declined (05) until it is owed again.",
      field: "New cap in " + row.currency + " (e.g. " + row.cap + ")",
      initial: row.cap,
    });
    if (typed === null) return;
    const minor = minorUnits(typed, row.exponent);
    if (minor === null) {
      notify("Not an amount in " + row.currency + ": " + typed, "error");
      return;
    }
    await act(
      () => row.name + "'s " + row.currency + " cap set to " + typed + ".",
      () => api("POST", "/v1/admin/participants/" + row.participant + "/caps", { currency: row.currency, net_debit_cap: Number(minor) }),
    );
  }

  async function accountStatus(status) {
    const id = $("account-id").value.trim();
    if (!/^\d+$/.test(id)) {
      notify("An account id is a number.", "error");
      return;
    }
    const blocking = status === "blocked";
    const yes = await confirmAction({
      title: (blocking ? "Block" : "Unblock") + " account " + id + "?",
      text: blocking
        ? "Every card and token on it is declined (05) from the next request, until it is unblocked."
        : "Its cards are authorized again from the next request.",
    });
    if (!yes) return;
    await act(() => "Account " + id + " is " + (blocking ? "blocked." : "active again."), () =>
      api("POST", "/v1/admin/accounts/" + id + "/status", { status }),
    );
  }

  // ---- start -----------------------------------------------------------------------------

  function start() {
    showTokenState();
    const askForToken = () => {
      const state = $("connection-state");
      state.dataset.state = "stale";
      state.textContent = "no token";
      notify("Type the read token (to watch) or the admin token (to watch and act) above: the daemon shows its figures only with one.", "info");
    };
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (value) {
        sessionStorage.setItem(TOKEN_KEY, value);
        access = "none";
        $("notice").hidden = true;
      }
      $("token-input").value = "";
      showTokenState();
      live();
      views();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      access = "none";
      showTokenState();
      askForToken();
    });
    $("close-window").addEventListener("click", closeWindow);
    $("account-form").addEventListener("submit", (event) => {
      event.preventDefault();
      accountStatus("blocked");
    });
    $("account-unblock").addEventListener("click", () => accountStatus("active"));
    charts = makeCharts();

    let liveBusy = false;
    let viewsBusy = false;
    // Without a token the views would only be refused: ask for one instead.
    const live = async () => {
      if (liveBusy || document.hidden || !token()) return;
      liveBusy = true;
      await refreshLive();
      liveBusy = false;
    };
    const views = async () => {
      if (viewsBusy || document.hidden || !token()) return;
      viewsBusy = true;
      await refreshViews();
      viewsBusy = false;
    };
    if (!token()) askForToken();
    live();
    views();
    setInterval(live, LIVE_EVERY_MS);
    setInterval(views, VIEWS_EVERY_MS);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        live();
        views();
      }
    });
  }

  start();
})();
