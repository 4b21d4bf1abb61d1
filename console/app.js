// The hato console (docs/console.md): hash-routed pages over the admin API.
// Everything put into the page goes through el()/text nodes (textContent),
// never innerHTML with data.

import { api, ApiError, login, logout, seg, session, setUnauthorized } from "./api.js";
import { LineChart, short } from "./chart.js";
import { MqttWs, payloadText } from "./mqttws.js";

const $ = (sel) => document.querySelector(sel);
const view = $("#view");

// el("div", {class: "x", onclick: fn}, "text", child, ...)
export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "value") e.value = v;
    else if (k === "checked") e.checked = !!v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function flash(msg, kind = "ok") {
  const f = $("#flash");
  f.replaceChildren(el("div", { class: "flash " + kind }, msg));
  clearTimeout(flash.t);
  flash.t = setTimeout(() => f.replaceChildren(), 6000);
}

function fmtTime(unix) {
  if (unix === null || unix === undefined) return "never";
  return new Date(unix * 1000).toLocaleString();
}

function unavailable(e) {
  const what = e instanceof ApiError && e.status ? "HTTP " + e.status : "no answer";
  return el("p", { class: "unavailable" }, "not available (" + what + "): " + e.message);
}

// A table: cols [{title, get(item) -> text|Node}]
function table(cols, items, id) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { id },
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, c.title)))),
      el(
        "tbody",
        {},
        items.length
          ? items.map((it) => el("tr", {}, cols.map((c) => el("td", { "data-label": c.title }, c.get(it)))))
          : el("tr", {}, el("td", { colspan: cols.length, class: "empty" }, "nothing"))
      )
    )
  );
}

function pager(doc, offset, limit, go) {
  const total = doc.total ?? doc.items.length;
  return el(
    "div",
    { class: "pager" },
    el("button", { type: "button", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, "‹ previous"),
    el("span", {}, `${total ? offset + 1 : 0}–${Math.min(total, offset + doc.items.length)} of ${total}`),
    el("button", { type: "button", disabled: offset + limit >= total, onclick: () => go(offset + limit) }, "next ›")
  );
}

async function confirmDo(question, fn, done) {
  if (!window.confirm(question)) return;
  try {
    await fn();
    flash("done");
    if (done) done();
  } catch (e) {
    flash(e.message, "error");
  }
}

// ---- pages ----------------------------------------------------------------

let stop = () => {}; // what the current page must end when left (timers, sockets)

function pageLogin() {
  const user = el("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = el("input", { id: "login-pass", name: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = el("p", { id: "login-error", class: "error", role: "alert" });
  const form = el(
    "form",
    {
      id: "login",
      class: "card narrow",
      onsubmit: async (ev) => {
        ev.preventDefault();
        msg.textContent = "";
        try {
          await login(user.value, pass.value);
          pass.value = "";
          location.hash = "#/overview";
          route();
        } catch (e) {
          msg.textContent = e.message;
        }
      },
    },
    el("h1", {}, "Log in"),
    el("label", {}, "Admin user", user),
    el("label", {}, "Password", pass),
    el("button", { id: "login-submit", type: "submit" }, "Log in"),
    msg
  );
  view.replaceChildren(form);
  user.focus();
}

function pageOverview() {
  const stat = (id, label) => el("div", { class: "stat" }, el("span", { class: "num", id }, "–"), el("span", { class: "label" }, label));
  const canvas = el("canvas", { id: "chart-rates", class: "chart", "aria-label": "messages per second" });
  const ccanvas = el("canvas", { id: "chart-conns", class: "chart", "aria-label": "connections" });
  const err = el("div", { id: "overview-error" });
  const version = el("span", { id: "version" });
  view.replaceChildren(
    el("h1", {}, "Overview ", version),
    err,
    el("div", { class: "stats" },
      stat("stat-connections", "connections"),
      stat("stat-in", "messages in / s"),
      stat("stat-out", "messages out / s"),
      stat("stat-dropped", "dropped / s"),
      stat("stat-subscriptions", "subscriptions"),
      stat("stat-retained", "retained"),
      stat("stat-uptime", "uptime")),
    el("div", { class: "charts" },
      el("div", { class: "card" }, el("h2", {}, "Messages per second"),
        el("p", { class: "legend" }, legend(["in", "out", "dropped"])), canvas),
      el("div", { class: "card" }, el("h2", {}, "Connections"), ccanvas))
  );
  const rates = new LineChart(canvas, [{ name: "in" }, { name: "out" }, { name: "dropped" }]);
  const conns = new LineChart(ccanvas, [{ name: "connections" }]);
  let last = null;
  let live = true;
  const tick = async () => {
    let m;
    try {
      m = await api("GET", "/api/v1/metrics");
    } catch (e) {
      err.replaceChildren(unavailable(e));
      return;
    }
    if (!live) return;
    err.replaceChildren();
    const now = performance.now() / 1000;
    const cnt = [m.messages_received_total, m.messages_sent_total, m.publish_messages_dropped_total];
    let r = [0, 0, 0];
    if (last) {
      const dt = Math.max(0.001, now - last.t);
      r = cnt.map((v, i) => Math.max(0, (v - last.c[i]) / dt)); // a restart resets counters
    }
    last = { t: now, c: cnt };
    version.textContent = m.version ? "hato " + m.version : "";
    $("#stat-connections").textContent = String(m.clients_connected);
    $("#stat-in").textContent = short(r[0]);
    $("#stat-out").textContent = short(r[1]);
    $("#stat-dropped").textContent = short(r[2]);
    $("#stat-subscriptions").textContent = String(m.subscriptions);
    $("#stat-retained").textContent = String(m.retained_messages);
    $("#stat-uptime").textContent = uptime(m.uptime_seconds);
    rates.push(r);
    conns.push([m.clients_connected]);
  };
  tick();
  const t = setInterval(tick, 2000);
  const resize = () => { rates.draw(); conns.draw(); };
  window.addEventListener("resize", resize);
  stop = () => {
    live = false;
    clearInterval(t);
    window.removeEventListener("resize", resize);
  };
}

function legend(names) {
  // colours by class: the CSP allows no style attributes
  return names.map((n, i) => el("span", { class: "key" }, el("i", { class: "k" + i }), n));
}

function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

async function pageClients(params) {
  const search = el("input", { id: "clients-search", type: "search", placeholder: "client id contains…", value: params.get("search") || "" });
  const connected = el("select", { id: "clients-connected" },
    el("option", { value: "" }, "all"), el("option", { value: "true" }, "connected"), el("option", { value: "false" }, "offline"));
  connected.value = params.get("connected") || "";
  const out = el("div", { id: "clients-list" });
  const limit = 50;
  const load = async (offset = 0) => {
    const q = new URLSearchParams({ limit, offset });
    if (search.value) q.set("search", search.value);
    if (connected.value) q.set("connected", connected.value);
    let doc;
    try {
      doc = await api("GET", "/api/v1/clients?" + q);
    } catch (e) {
      out.replaceChildren(unavailable(e));
      return;
    }
    out.replaceChildren(
      table([
        { title: "client id", get: (c) => el("a", { href: "#/client/" + seg(c.client_id) }, c.client_id) },
        { title: "user", get: (c) => c.username ?? "" },
        { title: "address", get: (c) => c.address ?? "" },
        { title: "protocol", get: (c) => c.protocol ?? "" },
        { title: "connected", get: (c) => (c.connected ? "since " + fmtTime(c.connected_at) : "no") },
        { title: "subs", get: (c) => c.subscriptions ?? "" },
        { title: "queued", get: (c) => c.queued ?? "" },
        { title: "", get: (c) => c.connected ? kickButton(c.client_id, () => load(offset)) : "" },
      ], doc.items, "clients-table"),
      pager(doc, offset, limit, load)
    );
  };
  view.replaceChildren(
    el("h1", {}, "Clients"),
    el("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); load(0); } },
      search, connected, el("button", { type: "submit" }, "Search")),
    out
  );
  load(0);
}

function kickButton(id, done) {
  return el("button", {
    type: "button", class: "danger",
    onclick: () => confirmDo(`Disconnect ${id}? (its session stays)`, () => api("DELETE", "/api/v1/clients/" + seg(id)), done),
  }, "Kick");
}

async function pageClient(id) {
  view.replaceChildren(el("h1", {}, "Client ", el("code", {}, id)));
  let c;
  try {
    c = await api("GET", "/api/v1/clients/" + seg(id));
  } catch (e) {
    view.append(unavailable(e));
    return;
  }
  const skip = new Set(["subscription_list", "limits"]);
  const rows = Object.entries(c).filter(([k]) => !skip.has(k));
  view.append(
    el("div", { class: "card" }, el("dl", { class: "kv" }, rows.map(([k, v]) => [
      el("dt", {}, k), el("dd", {}, k.endsWith("_at") && typeof v === "number" ? fmtTime(v) : JSON.stringify(v))]))),
    c.connected ? el("p", {}, kickButton(id, () => pageClient(id))) : null,
    el("h2", {}, "Subscriptions"),
    table([
      { title: "filter", get: (s) => s.filter },
      { title: "qos", get: (s) => s.qos },
      { title: "no local", get: (s) => (s.no_local ? "yes" : "") },
      { title: "retain as published", get: (s) => (s.retain_as_published ? "yes" : "") },
      { title: "identifier", get: (s) => s.identifier ?? "" },
    ], c.subscription_list || [], "client-subs"),
    c.limits ? [el("h2", {}, "Limits"), el("pre", {}, JSON.stringify(c.limits, null, 2))] : null
  );
}

async function pageSessions() {
  const out = el("div", { id: "sessions-list" });
  const limit = 50;
  const load = async (offset = 0) => {
    let doc;
    try {
      doc = await api("GET", `/api/v1/sessions?limit=${limit}&offset=${offset}`);
    } catch (e) {
      out.replaceChildren(unavailable(e));
      return;
    }
    out.replaceChildren(
      table([
        { title: "client id", get: (s) => s.client_id },
        { title: "user", get: (s) => s.username ?? "" },
        { title: "queued", get: (s) => s.queued ?? "" },
        { title: "subs", get: (s) => s.subscriptions ?? "" },
        { title: "expires", get: (s) => fmtTime(s.expires_at) },
        { title: "", get: (s) => el("button", { type: "button", class: "danger",
          onclick: () => confirmDo(`Delete the session of ${s.client_id}?`, () => api("DELETE", "/api/v1/sessions/" + seg(s.client_id)), () => load(offset)) }, "Delete") },
      ], doc.items, "sessions-table"),
      pager(doc, offset, limit, load)
    );
  };
  view.replaceChildren(el("h1", {}, "Offline sessions"), out);
  load(0);
}

async function pageRetained(params) {
  const filter = el("input", { id: "retained-filter", value: params.get("filter") || "#", placeholder: "MQTT filter, e.g. sensors/#" });
  const out = el("div", { id: "retained-list" });
  const detail = el("div", { id: "retained-detail" });
  const limit = 50;
  const load = async (offset = 0) => {
    let doc;
    try {
      doc = await api("GET", `/api/v1/retained?filter=${encodeURIComponent(filter.value || "#")}&limit=${limit}&offset=${offset}`);
    } catch (e) {
      out.replaceChildren(unavailable(e));
      return;
    }
    out.replaceChildren(
      table([
        { title: "topic", get: (m) => el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); show(m.topic); } }, m.topic) },
        { title: "qos", get: (m) => m.qos },
        { title: "bytes", get: (m) => m.payload_bytes },
        { title: "payload", get: (m) => (m.payload === null ? "(binary)" : m.payload.length > 60 ? m.payload.slice(0, 60) + "…" : m.payload) },
        { title: "", get: (m) => delRetained(m.topic, () => load(offset)) },
      ], doc.items, "retained-table"),
      pager(doc, offset, limit, load)
    );
  };
  const show = async (topic) => {
    try {
      const m = await api("GET", "/api/v1/retained/" + seg(topic));
      detail.replaceChildren(el("div", { class: "card" },
        el("h2", {}, m.topic),
        el("p", {}, `QoS ${m.qos}, ${m.payload_bytes} bytes, expires ${fmtTime(m.expires_at)}`),
        el("pre", { class: "payload" }, m.payload ?? "base64: " + m.payload_base64),
        delRetained(m.topic, () => { detail.replaceChildren(); load(0); })));
    } catch (e) {
      detail.replaceChildren(unavailable(e));
    }
  };
  view.replaceChildren(
    el("h1", {}, "Retained messages"),
    el("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); load(0); } }, filter, el("button", { type: "submit" }, "List")),
    detail, out
  );
  load(0);
}

function delRetained(topic, done) {
  return el("button", { type: "button", class: "danger",
    onclick: () => confirmDo(`Delete the retained message of ${topic}?`, () => api("DELETE", "/api/v1/retained/" + seg(topic)), done) }, "Delete");
}

async function pageTopics() {
  const url = el("input", { id: "tt-url", placeholder: "ws://host:port/mqtt" });
  const user = el("input", { id: "tt-user", autocomplete: "off", placeholder: "MQTT user (optional)" });
  const pass = el("input", { id: "tt-pass", type: "password", autocomplete: "off", placeholder: "MQTT password" });
  const filter = el("input", { id: "tt-filter", value: "#" });
  const ptopic = el("input", { id: "tt-topic", placeholder: "topic" });
  const ppayload = el("textarea", { id: "tt-payload", rows: 2, placeholder: "payload (text)" });
  const pretain = el("input", { id: "tt-retain", type: "checkbox" });
  const state = el("span", { id: "tt-state" }, "not connected");
  const log = el("ol", { id: "tt-messages", class: "messages" });
  const top = el("div", { id: "tt-top" });
  let client = null;
  const setState = (s) => (state.textContent = s);
  const connect = () => {
    if (client) client.disconnect();
    client = new MqttWs(url.value, { clientId: "hato-console-" + Math.random().toString(16).slice(2, 10), username: user.value, password: pass.value });
    client.onconnect = async () => {
      setState("connected");
      try {
        const rc = await client.subscribe(filter.value || "#");
        setState(rc[0] === 0x80 ? "subscription refused (0x80)" : "subscribed to " + (filter.value || "#"));
      } catch (e) {
        setState(e.message);
      }
    };
    client.onmessage = (topic, bytes, retain) => {
      log.prepend(el("li", {}, el("code", {}, topic), retain ? el("span", { class: "tag" }, "retained") : null, " ", payloadText(bytes)));
      while (log.children.length > 200) log.lastChild.remove();
    };
    client.onclose = (why) => setState(why);
    setState("connecting…");
    try {
      client.connect();
    } catch (e) {
      setState(e.message);
    }
  };
  view.replaceChildren(
    el("h1", {}, "Topic tester"),
    el("form", { class: "card grid", onsubmit: (ev) => { ev.preventDefault(); connect(); } },
      el("label", {}, "WebSocket URL", url), el("label", {}, "MQTT user", user), el("label", {}, "MQTT password", pass),
      el("label", {}, "Subscribe to", filter),
      el("div", { class: "actions" }, el("button", { id: "tt-connect", type: "submit" }, "Connect & subscribe"), " ",
        el("button", { type: "button", onclick: () => client && client.disconnect() }, "Disconnect"), " ", state)),
    el("form", { class: "card grid", onsubmit: (ev) => {
      ev.preventDefault();
      try {
        client.publish(ptopic.value, ppayload.value, pretain.checked);
        flash("published to " + ptopic.value);
      } catch (e) {
        flash("connect first (" + e.message + ")", "error");
      }
    } },
      el("label", {}, "Topic", ptopic), el("label", {}, "Payload", ppayload),
      el("label", { class: "inline" }, pretain, "retain"),
      el("div", { class: "actions" }, el("button", { id: "tt-publish", type: "submit" }, "Publish (QoS 0)"))),
    el("h2", {}, "Messages"), log,
    el("h2", {}, "Busiest topics"), top
  );
  stop = () => client && client.disconnect();
  try {
    const ls = await api("GET", "/api/v1/listeners");
    const ws = (ls.items || []).find((l) => l.protocol === "websockets");
    if (ws && !url.value) {
      const host = !ws.address || ws.address === "0.0.0.0" || ws.address === "::" ? location.hostname : ws.address;
      url.value = `${ws.tls ? "wss" : "ws"}://${host.includes(":") ? "[" + host + "]" : host}:${ws.port}/mqtt`;
    } else if (!ws) {
      setState("no websockets listener is configured (protocol websockets)");
    }
  } catch (e) {
    setState("listeners " + (e.status ? "not available (HTTP " + e.status + ")" : e.message) + ": enter the URL");
  }
  try {
    const t = await api("GET", "/api/v1/topics?limit=10");
    top.replaceChildren(table([
      { title: "topic", get: (x) => x.topic },
      { title: "msg/s", get: (x) => short(x.messages_per_second) },
      { title: "bytes/s", get: (x) => short(x.bytes_per_second) },
      { title: "messages", get: (x) => x.messages },
    ], t.items || [], "topics-table"));
  } catch (e) {
    top.replaceChildren(unavailable(e));
  }
}

// Users, roles, groups, default ACLs: the dynamic-security store.
async function pageUsers() {
  const users = el("div", { id: "users-list" }), roles = el("div", { id: "roles-list" });
  const groups = el("div", { id: "groups-list" }), defaults = el("div", { id: "acl-defaults" });
  const editor = el("div", { id: "acl-editor" });
  view.replaceChildren(el("h1", {}, "Users, roles and ACLs"),
    el("h2", {}, "Users"), users, el("h2", {}, "Roles"), roles, editor,
    el("h2", {}, "Groups"), groups, el("h2", {}, "Default ACL access"), defaults);
  const loadUsers = async () => {
    let doc;
    try {
      doc = await api("GET", "/api/v1/users");
    } catch (e) {
      users.replaceChildren(unavailable(e));
      return;
    }
    const name = el("input", { id: "user-new-name", placeholder: "user name", required: true });
    const pw = el("input", { id: "user-new-pass", type: "password", placeholder: "password", autocomplete: "new-password", required: true });
    const rolesIn = el("input", { id: "user-new-roles", placeholder: "roles, comma-separated" });
    users.replaceChildren(
      table([
        { title: "user", get: (u) => u.username },
        { title: "roles", get: (u) => (u.roles || []).map((r) => r.rolename).join(", ") },
        { title: "groups", get: (u) => (u.groups || []).map((g) => g.groupname ?? g).join(", ") },
        { title: "disabled", get: (u) => el("input", { type: "checkbox", checked: u.disabled,
          onchange: (ev) => confirmDo(`${ev.target.checked ? "Disable" : "Enable"} ${u.username}?`,
            () => api("PUT", "/api/v1/users/" + seg(u.username), { disabled: ev.target.checked }), loadUsers) }) },
        { title: "", get: (u) => [
          el("button", { type: "button", onclick: () => {
            const p = window.prompt(`New password for ${u.username}`);
            if (p) confirmDo(`Set the password of ${u.username}?`, () => api("PUT", "/api/v1/users/" + seg(u.username), { password: p }));
          } }, "Password"), " ",
          el("button", { type: "button", onclick: () => {
            const r = window.prompt(`Roles of ${u.username} (comma-separated)`, (u.roles || []).map((x) => x.rolename).join(", "));
            if (r !== null) confirmDo(`Set the roles of ${u.username}?`, () => api("PUT", "/api/v1/users/" + seg(u.username), { roles: listOf(r).map((rolename) => ({ rolename })) }), loadUsers);
          } }, "Roles"), " ",
          el("button", { type: "button", class: "danger", onclick: () => confirmDo(`Delete user ${u.username}?`, () => api("DELETE", "/api/v1/users/" + seg(u.username)), loadUsers) }, "Delete")] },
      ], doc.items || [], "users-table"),
      el("form", { class: "toolbar add", onsubmit: (ev) => {
        ev.preventDefault();
        confirmDo(`Create user ${name.value}?`, () => api("POST", "/api/v1/users", { username: name.value, password: pw.value, roles: listOf(rolesIn.value).map((rolename) => ({ rolename })) }), loadUsers);
      } }, name, pw, rolesIn, el("button", { type: "submit" }, "Add user"))
    );
  };
  const loadRoles = async () => {
    let doc;
    try {
      doc = await api("GET", "/api/v1/roles");
    } catch (e) {
      roles.replaceChildren(unavailable(e));
      return;
    }
    const name = el("input", { placeholder: "role name", required: true });
    roles.replaceChildren(
      table([
        { title: "role", get: (r) => r.rolename },
        { title: "ACLs", get: (r) => (r.acls || []).length },
        { title: "", get: (r) => [
          el("button", { type: "button", onclick: () => editRole(r.rolename) }, "Edit ACLs"), " ",
          el("button", { type: "button", class: "danger", onclick: () => confirmDo(`Delete role ${r.rolename}?`, () => api("DELETE", "/api/v1/roles/" + seg(r.rolename)), loadRoles) }, "Delete")] },
      ], doc.items || [], "roles-table"),
      el("form", { class: "toolbar add", onsubmit: (ev) => {
        ev.preventDefault();
        confirmDo(`Create role ${name.value}?`, () => api("POST", "/api/v1/roles", { rolename: name.value, acls: [] }), loadRoles);
      } }, name, el("button", { type: "submit" }, "Add role"))
    );
  };
  const ACLTYPES = ["publishClientSend", "publishClientReceive", "subscribeLiteral", "subscribePattern", "unsubscribeLiteral", "unsubscribePattern"];
  const editRole = async (rolename) => {
    let r;
    try {
      r = await api("GET", "/api/v1/roles/" + seg(rolename));
    } catch (e) {
      editor.replaceChildren(unavailable(e));
      return;
    }
    const acls = (r.acls || []).map((a) => ({ ...a }));
    const render = () => {
      const rows = acls.map((a, i) => el("tr", {},
        el("td", { "data-label": "type" }, el("select", { onchange: (ev) => (a.acltype = ev.target.value) },
          ACLTYPES.map((t) => el("option", { value: t, selected: t === a.acltype }, t)))),
        el("td", { "data-label": "topic" }, el("input", { value: a.topic, oninput: (ev) => (a.topic = ev.target.value) })),
        el("td", { "data-label": "allow" }, el("input", { type: "checkbox", checked: a.allow, onchange: (ev) => (a.allow = ev.target.checked) })),
        el("td", { "data-label": "priority" }, el("input", { type: "number", class: "short", value: a.priority ?? 0, oninput: (ev) => (a.priority = Number(ev.target.value)) })),
        el("td", {}, el("button", { type: "button", onclick: () => { acls.splice(i, 1); render(); } }, "Remove"))));
      editor.replaceChildren(el("div", { class: "card" },
        el("h2", {}, "ACLs of role ", el("code", {}, rolename)),
        el("div", { class: "table-wrap" }, el("table", { id: "acl-table" },
          el("thead", {}, el("tr", {}, ["type", "topic", "allow", "priority", ""].map((t) => el("th", {}, t)))),
          el("tbody", {}, rows))),
        el("p", {},
          el("button", { type: "button", onclick: () => { acls.push({ acltype: "subscribePattern", topic: "#", allow: true, priority: 0 }); render(); } }, "Add ACL"), " ",
          el("button", { type: "button", onclick: () => confirmDo(`Save the ACLs of ${rolename}?`, () => api("PUT", "/api/v1/roles/" + seg(rolename), { acls }), loadRoles) }, "Save"), " ",
          el("button", { type: "button", onclick: () => editor.replaceChildren() }, "Close"))));
    };
    render();
  };
  const loadGroups = async () => {
    try {
      const doc = await api("GET", "/api/v1/groups");
      groups.replaceChildren(table([
        { title: "group", get: (g) => g.groupname },
        { title: "roles", get: (g) => (g.roles || []).map((r) => r.rolename ?? r).join(", ") },
        { title: "clients", get: (g) => (g.clients || []).map((c) => c.username ?? c).join(", ") },
      ], doc.items || [], "groups-table"));
    } catch (e) {
      groups.replaceChildren(unavailable(e));
    }
  };
  const loadDefaults = async () => {
    let d;
    try {
      d = await api("GET", "/api/v1/acl-defaults");
    } catch (e) {
      defaults.replaceChildren(unavailable(e));
      return;
    }
    const boxes = Object.entries(d).filter(([, v]) => typeof v === "boolean")
      .map(([k, v]) => el("label", { class: "inline" }, el("input", { type: "checkbox", name: k, checked: v }), k));
    defaults.replaceChildren(el("form", { class: "card", onsubmit: (ev) => {
      ev.preventDefault();
      const body = {};
      for (const b of ev.target.querySelectorAll("input[type=checkbox]")) body[b.name] = b.checked;
      confirmDo("Save the default ACL access?", () => api("PUT", "/api/v1/acl-defaults", body), loadDefaults);
    } }, boxes, el("button", { type: "submit" }, "Save")));
  };
  loadUsers();
  loadRoles();
  loadGroups();
  loadDefaults();
}

function listOf(s) {
  return s.split(",").map((x) => x.trim()).filter(Boolean);
}

const LIMIT_FIELDS = ["publish_messages_per_second", "publish_bytes_per_second", "burst_messages", "burst_bytes",
  "max_connections", "max_subscriptions", "max_queued_messages", "over_limit"];

async function pageLimits() {
  view.replaceChildren(el("h1", {}, "Limits"));
  let doc;
  try {
    doc = await api("GET", "/api/v1/limits");
  } catch (e) {
    view.append(unavailable(e));
    return;
  }
  // One form per object (global, per_client, users.NAME, roles.NAME): the
  // fields it has, plus the known ones; empty fields are left out of the PUT.
  const section = (title, obj, wrap) => {
    const keys = [...new Set([...Object.keys(obj || {}), ...(title === "global" ? [] : LIMIT_FIELDS)])];
    const inputs = keys.filter((k) => typeof (obj || {})[k] !== "object" || obj[k] === null).map((k) => {
      const v = (obj || {})[k];
      const readonly = title === "global" && k === "devices";
      const input = k === "over_limit"
        ? el("select", { name: k }, ["", "refuse", "drop", "pause"].map((o) => el("option", { value: o, selected: o === (v ?? "") }, o || "(default)")))
        : el("input", { name: k, value: v ?? "", inputmode: "numeric", readonly });
      return el("label", {}, k, input);
    });
    return el("form", { class: "card grid", "data-limits": title, onsubmit: (ev) => {
      ev.preventDefault();
      const o = {};
      for (const i of ev.target.querySelectorAll("input:not([readonly]), select")) {
        if (i.value === "") continue;
        o[i.name] = i.name === "over_limit" ? i.value : Number(i.value);
      }
      confirmDo(`Apply the ${title} limits now?`, () => api("PUT", "/api/v1/limits", wrap(o)), pageLimits);
    } }, el("h2", {}, title), inputs, el("div", { class: "actions" }, el("button", { type: "submit" }, "Apply")));
  };
  view.append(section("global", doc.global, (o) => ({ global: o })));
  view.append(section("per_client", doc.per_client, (o) => ({ per_client: o })));
  for (const kind of ["users", "roles"])
    for (const [name, obj] of Object.entries(doc[kind] || {}))
      view.append(section(`${kind} ${name}`, obj, (o) => ({ [kind]: { [name]: o } })));
  const who = el("input", { placeholder: "user name" });
  view.append(el("form", { class: "toolbar add", onsubmit: (ev) => {
    ev.preventDefault();
    if (who.value) view.append(section(`users ${who.value}`, {}, (o) => ({ users: { [who.value]: o } })));
  } }, who, el("button", { type: "submit" }, "Add limits for a user")));
}

async function pageConfig() {
  view.replaceChildren(el("h1", {}, "Configuration in effect"));
  let c;
  try {
    c = await api("GET", "/api/v1/config");
  } catch (e) {
    view.append(unavailable(e));
    return;
  }
  const filter = el("input", { id: "config-filter", type: "search", placeholder: "filter directives…" });
  const kv = (obj, id) => el("div", { class: "table-wrap" }, el("table", { id, class: "config" }, el("tbody", {},
    Object.entries(obj).map(([k, v]) => el("tr", { "data-key": k }, el("th", {}, k), el("td", {}, v === null ? "—" : String(v)))))));
  const body = el("div", {},
    el("h2", {}, "Global"), kv(c.global || {}, "config-global"),
    (c.listeners || []).map((l, i) => [
      el("h2", {}, `Listener ${l.port}${l.address ? " on " + l.address : ""}${l.unix_path ? " " + l.unix_path : ""}`,
        el("small", {}, ` (${l.defined_at_file}:${l.defined_at_line})`)),
      kv(l.settings || {}, "config-listener-" + i)]));
  filter.addEventListener("input", () => {
    const f = filter.value.toLowerCase();
    for (const tr of body.querySelectorAll("tr[data-key]")) tr.hidden = !!f && !tr.dataset.key.includes(f);
  });
  view.append(el("div", { class: "toolbar" }, filter), body);
}

// ---- routing --------------------------------------------------------------

const PAGES = {
  overview: pageOverview,
  clients: pageClients,
  client: pageClient,
  sessions: pageSessions,
  retained: pageRetained,
  topics: pageTopics,
  users: pageUsers,
  limits: pageLimits,
  config: pageConfig,
};

function route() {
  stop();
  stop = () => {};
  const h = location.hash.replace(/^#\/?/, "");
  const [pathPart, query = ""] = h.split("?");
  const [name, ...rest] = pathPart.split("/");
  const params = new URLSearchParams(query);
  const s = session();
  $("#nav").hidden = $("#who").hidden = !s;
  $("#who-name").textContent = s ? s.user + (s.role === "read" ? " (read only)" : "") : "";
  document.body.dataset.role = s ? s.role : "";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + name);
  if (!s || name === "login") {
    document.body.dataset.page = "login";
    return pageLogin();
  }
  const page = PAGES[name] || pageOverview;
  document.body.dataset.page = PAGES[name] ? name : "overview";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  const r = page === pageClient ? page(arg || "") : page(params);
  if (r && r.catch) r.catch((e) => view.append(unavailable(e)));
}

setUnauthorized(() => {
  flash("your session ended: log in again", "error");
  route();
});

$("#logout").addEventListener("click", async () => {
  try {
    await logout();
  } catch (e) {
    /* the session is gone either way */
  }
  location.hash = "#/login";
  route();
});

$("#reload").addEventListener("click", () =>
  confirmDo("Reload the configuration (as SIGHUP)?", () => api("POST", "/api/v1/reload"), () => flash("configuration reloaded")));

window.addEventListener("hashchange", route);
route();
