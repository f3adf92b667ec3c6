// The web UI: a client of this node's public REST API and nothing else. Everything shown is
// built with text nodes (never HTML from data: job names, logs and labels are anyone's).
"use strict";

const EXEC_STATES = ["Undefined", "New", "AskForBid", "AskForBidAccepted", "AskForBidRejected",
  "BidAccepted", "BidRejected", "Completed", "Failed", "Cancelled"];
const DESIRED_STATES = ["Pending", "Running", "Stopped"];
const JOB_STATES = ["Pending", "Queued", "Running", "Completed", "Failed", "Stopped"];
const TERMINAL = new Set(["Completed", "Failed", "Stopped"]);
const PAGE = 50;

let refresh = null;      // the current page's poller
let logReader = null;    // the current log stream

// ---- API ----------------------------------------------------------------------------------

function authHeader() {
  return sessionStorage.getItem("bacalhau.auth") || "";
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const auth = authHeader();
  if (auth) headers["Authorization"] = auth;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try {
      const e = await r.json();
      const reason = e.Details && e.Details.reason ? ": " + e.Details.reason : "";
      message = (e.Message || e.message || message) + reason + (e.Hint ? " (" + e.Hint + ")" : "");
    } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, message);
  }
  const type = r.headers.get("Content-Type") || "";
  return type.includes("json") ? r.json() : r.text();
}

// An action's refusal stays up until the next page; a failed refresh is replaced by the next
// one that works.
let actionFailed = false;

function showError(e, action) {
  const b = document.getElementById("banner");
  if (!e) {
    if (!actionFailed) { b.hidden = true; b.textContent = ""; }
    return;
  }
  actionFailed = actionFailed || Boolean(action);
  b.hidden = false;
  b.textContent = e.status === 401 ? "Sign in to see this: " + e.message
    : e.status === 403 ? "Your credentials do not allow this: " + e.message
    : String(e.message || e);
}

// ---- DOM helpers --------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "class") n.className = v;
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function badge(state) {
  return el("span", { class: "badge s-" + String(state).replace(/[^A-Za-z]/g, "") }, state);
}

function table(headers, rows, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function time(value) {
  if (value === undefined || value === null || value === "" || value === 0) return "";
  const d = typeof value === "number" ? new Date(value / 1e6) : new Date(value);
  if (isNaN(d) || d.getUTCFullYear() < 1971) return "";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function short(id) { return String(id || "").slice(0, 10); }

function render(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function stopTimers() {
  if (refresh) { clearInterval(refresh); refresh = null; }
  if (logReader) { logReader.cancel().catch(() => {}); logReader = null; }
}

function every(ms, f) {
  refresh = setInterval(() => f().catch(showError), ms);
}

function engineOf(job) {
  const t = (job.Tasks || [])[0];
  return t && t.Engine ? t.Engine.Type : "";
}

// ---- Jobs ---------------------------------------------------------------------------------

async function jobsPage(params) {
  const state = params.get("state") || "";
  const type = params.get("type") || "";
  const engine = params.get("engine") || "";
  const labels = params.get("labels") || "";
  const select = (name, value, options) => el("select", { name, id: "filter-" + name },
    el("option", { value: "" }, "any"), options.map((o) => el("option", { value: o, selected: o === value }, o)));
  const form = el("form", { class: "filters", id: "job-filters", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(new FormData(ev.target));
    for (const [k, v] of [...q.entries()]) if (!v) q.delete(k);
    location.hash = "#/jobs" + (q.toString() ? "?" + q : "");
  } },
  el("label", {}, "State", select("state", state, JOB_STATES)),
  el("label", {}, "Type", select("type", type, ["batch", "ops", "daemon", "service"])),
  el("label", {}, "Engine", select("engine", engine, ["docker", "wasm"])),
  el("label", {}, "Labels", el("input", { name: "labels", value: labels, placeholder: "env=prod,tier!=web" })),
  el("button", { type: "submit" }, "Filter"));
  const body = el("tbody", { id: "jobs-body" });
  const more = el("button", { id: "jobs-more", hidden: true }, "Older jobs");
  const count = el("span", { class: "muted", id: "jobs-count" });
  render(el("h1", {}, "Jobs"), form,
    el("table", { id: "jobs" }, el("thead", {}, el("tr", {}, ["ID", "Name", "Type", "Engine", "State", "Created", "Modified"].map((h) => el("th", {}, h)))), body),
    el("div", { class: "toolbar" }, more, count));

  const query = (token) => {
    const q = new URLSearchParams({ limit: String(PAGE), reverse: "true", order_by: "created_at" });
    if (state) q.set("state", state);
    if (type) q.set("type", type);
    if (engine) q.set("engine", engine);
    if (labels) q.set("labels", labels);
    if (token) q.set("next_token", token);
    return "/api/v1/orchestrator/jobs?" + q;
  };
  const row = (j) => el("tr", { "data-job": j.ID },
    el("td", { class: "mono" }, el("a", { href: "#/jobs/" + encodeURIComponent(j.ID) }, short(j.ID))),
    el("td", {}, j.Name === j.ID ? "" : j.Name),
    el("td", {}, j.Type),
    el("td", {}, engineOf(j)),
    el("td", { class: "state" }, badge((j.State || {}).StateType)),
    el("td", {}, time(j.CreateTime)),
    el("td", {}, time(j.ModifyTime)));
  let token = "";
  let shown = 0;
  const first = async () => {
    const page = await api("GET", query(""));
    const items = page.Items || [];
    // The first page is redrawn as it changes; pages loaded below it stay.
    const extra = [...body.children].slice(PAGE);
    body.replaceChildren(...items.map(row), ...extra);
    if (!extra.length) { token = page.NextToken || ""; more.hidden = !token; }
    shown = body.children.length;
    count.textContent = shown + " shown";
    showError(null);
    // For the first-paint benchmark: when the first page of jobs is in the document.
    if (!performance.getEntriesByName("jobs-painted").length) performance.mark("jobs-painted");
  };
  more.addEventListener("click", async () => {
    try {
      const page = await api("GET", query(token));
      body.append(...(page.Items || []).map(row));
      token = page.NextToken || "";
      more.hidden = !token;
      count.textContent = body.children.length + " shown";
    } catch (e) { showError(e); }
  });
  await first();
  every(2000, first);
}

function resultLinks(r) {
  const p = r.Params || {};
  switch ((r.Type || "").toLowerCase()) {
    case "ipfs": return [el("span", { class: "mono" }, p.CID), " ", downloadLink("/ipfs/" + p.CID, p.CID, "gateway")];
    case "local": case "urldownload": return [downloadLink(p.URL, "result.tar.gz", p.URL)];
    case "s3presigned": return [el("a", { href: p.PreSignedURL, rel: "noreferrer" }, "download (signed URL)")];
    case "s3": return [el("span", { class: "mono" }, "s3://" + (p.Bucket || "") + "/" + (p.Key || ""))];
    default: return [el("span", { class: "mono" }, JSON.stringify(r))];
  }
}

// A link that downloads through fetch, so that credentials go in a header, not in the URL.
function downloadLink(url, name, text) {
  return el("a", { href: url, class: "download", onclick: async (ev) => {
    ev.preventDefault();
    try {
      const headers = authHeader() ? { Authorization: authHeader() } : {};
      const r = await fetch(url, { headers });
      if (!r.ok) throw new ApiError(r.status, "download failed: " + r.status);
      const blob = URL.createObjectURL(await r.blob());
      const a = el("a", { href: blob, download: name });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(blob), 60000);
    } catch (e) { showError(e); }
  } }, text);
}

async function followLogs(id, pre, button) {
  if (logReader) { await logReader.cancel().catch(() => {}); logReader = null; }
  pre.textContent = "";
  button.disabled = true;
  const headers = authHeader() ? { Authorization: authHeader() } : {};
  try {
    const r = await fetch("/api/v1/orchestrator/jobs/" + encodeURIComponent(id) + "/logs?follow=true", { headers });
    if (!r.ok) {
      let msg = String(r.status);
      try { msg = (await r.json()).Message || msg; } catch (_) { /* plain */ }
      pre.textContent = "(no logs: " + msg + ")";
      return;
    }
    logReader = r.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await logReader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(decoder.decode(value, { stream: true }));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    pre.dataset.ended = "true";
  } catch (e) {
    if (logReader) pre.append("\n(log stream ended: " + e.message + ")");
  } finally {
    logReader = null;
    button.disabled = false;
  }
}

async function jobPage(id) {
  const header = el("h1", {}, "Job ", el("span", { class: "mono", id: "job-id" }, id), " ", el("span", { id: "job-state" }));
  const stop = el("button", { id: "stop-job", class: "danger" }, "Stop");
  const rerun = el("button", { id: "rerun-job" }, "Rerun");
  const summary = el("dl", { class: "kv", id: "job-summary" });
  const execs = el("div", { id: "executions" });
  const results = el("div", { id: "results" });
  const history = el("ol", { class: "timeline", id: "history" });
  const logs = el("pre", { id: "logs" });
  const follow = el("button", { id: "follow-logs" }, "Follow logs");
  const spec = el("pre", { class: "spec", id: "spec" });
  render(el("p", {}, el("a", { href: "#/jobs" }, "← Jobs")), header,
    el("div", { class: "toolbar" }, stop, rerun),
    summary, el("h2", {}, "Executions"), execs, el("h2", {}, "Results"), results,
    el("h2", {}, "Logs"), el("div", { class: "toolbar" }, follow), logs,
    el("h2", {}, "History"), history, el("h2", {}, "Spec"), spec);
  stop.addEventListener("click", async () => {
    if (!confirm("Stop job " + id + "?")) return;
    try { await api("DELETE", "/api/v1/orchestrator/jobs/" + encodeURIComponent(id) + "?reason=" + encodeURIComponent("stopped from the web UI")); await load(); } catch (e) { showError(e, true); }
  });
  rerun.addEventListener("click", async () => {
    try { await api("PUT", "/api/v1/orchestrator/jobs/" + encodeURIComponent(id) + "/rerun", { Reason: "rerun from the web UI" }); await load(); } catch (e) { showError(e, true); }
  });
  follow.addEventListener("click", () => followLogs(id, logs, follow));

  let lastRevision = -1;
  const load = async () => {
    const r = await api("GET", "/api/v1/orchestrator/jobs/" + encodeURIComponent(id) + "?include=executions,history");
    const job = r.Job;
    const state = (job.State || {}).StateType;
    document.getElementById("job-state").replaceChildren(badge(state));
    stop.disabled = TERMINAL.has(state);
    const kv = [["Name", job.Name], ["Namespace", job.Namespace], ["Type", job.Type], ["Engine", engineOf(job)],
      ["Version", job.Version], ["Count", job.Count], ["Created", time(job.CreateTime)], ["Modified", time(job.ModifyTime)],
      ["State", (job.State || {}).Message || state]];
    summary.replaceChildren(...kv.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v === undefined ? "" : v)]));
    const items = (r.Executions || {}).Items || [];
    execs.replaceChildren(table(["ID", "Node", "State", "Desired", "Partition", "Exit", "Cost", "Verification", "Message"],
      items.map((e) => el("tr", { "data-execution": e.ID },
        el("td", { class: "mono" }, short(e.ID)),
        el("td", { class: "mono" }, short(e.NodeID)),
        el("td", {}, badge(EXEC_STATES[(e.ComputeState || {}).StateType] || "")),
        el("td", {}, DESIRED_STATES[(e.DesiredState || {}).StateType] || ""),
        el("td", {}, e.PartitionIndex || 0),
        el("td", {}, e.RunOutput ? e.RunOutput.ExitCode : ""),
        el("td", {}, e.Cost === undefined || e.Cost === null ? "" : e.Cost),
        el("td", {}, e.Verification || ""),
        el("td", {}, (e.ComputeState || {}).Message || ""))), "executions-table"));
    const hist = (r.History || {}).Items || [];
    history.replaceChildren(...hist.map((h) => {
      const change = h.JobState ? h.JobState.Previous + " → " + h.JobState.New
        : h.ExecutionState ? (EXEC_STATES[h.ExecutionState.Previous] || "") + " → " + (EXEC_STATES[h.ExecutionState.New] || "") : "";
      return el("li", {}, el("span", { class: "muted" }, time(h.Time)),
        el("span", {}, h.Type === 1 || h.Type === "JobLevel" ? "job" : "execution " + short(h.ExecutionID)),
        el("span", {}, (h.Event || {}).Message || "", change ? el("span", { class: "muted" }, "  (" + change + ")") : ""));
    }));
    if (job.Revision !== lastRevision) {
      lastRevision = job.Revision;
      spec.textContent = JSON.stringify(job, null, 2);
      try {
        const res = await api("GET", "/api/v1/orchestrator/jobs/" + encodeURIComponent(id) + "/results");
        const list = res.Items || [];
        results.replaceChildren(list.length ? el("ul", {}, list.map((x) => el("li", {}, resultLinks(x))))
          : el("p", { class: "muted" }, TERMINAL.has(state) ? "No published results." : "Not published yet."));
      } catch (e) { results.replaceChildren(el("p", { class: "muted" }, e.message)); }
    }
    showError(null);
    return state;
  };
  const state = await load();
  if (!logs.textContent) followLogs(id, logs, follow);
  if (!TERMINAL.has(state)) every(1500, load);
  else every(5000, load);
}

// ---- Nodes --------------------------------------------------------------------------------

function cpu(m) { return m === undefined ? "" : (Math.round(m * 100) / 100) + " cores"; }
function bytes(n) {
  if (!n) return "0";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (Math.round(n * 10) / 10) + " " + u[i];
}

function health(n) {
  const id = (n.Info || {}).NodeID;
  const last = (n.ConnectionState || {}).LastError || "";
  if (n.Membership === "REJECTED") return "rejected by an operator";
  if (n.Connection === "DISCONNECTED") return last ? "disconnected: " + last : "disconnected";
  if (n.Membership === "PENDING") return "waiting for approval (bacalhau node approve " + id + ")";
  return "ok";
}

async function nodesPage() {
  const body = el("tbody", { id: "nodes-body" });
  render(el("h1", {}, "Nodes"), el("table", { id: "nodes" }, el("thead", {}, el("tr", {},
    ["ID", "Type", "Approval", "Status", "Health", "Engines", "CPU free / total", "Memory free / total", "GPU", "Running", "Queued", "Prices", "Dissents", ""].map((h) => el("th", {}, h)))), body));
  const act = async (id, action) => {
    try {
      await api("PUT", "/api/v1/orchestrator/nodes", { NodeID: id, Action: action, Message: action + " from the web UI" });
      await load();
    } catch (e) { showError(e, true); }
  };
  const load = async () => {
    const r = await api("GET", "/api/v1/orchestrator/nodes");
    const nodes = r.Nodes || r.nodes || [];
    body.replaceChildren(...nodes.map((n) => {
      const info = n.Info || {};
      const c = info.ComputeNodeInfo || {};
      const max = c.MaxCapacity || {}, free = c.AvailableCapacity || {};
      const p = c.Prices;
      const h = health(n);
      return el("tr", { "data-node": info.NodeID },
        el("td", { class: "mono", title: info.NodeID }, short(info.NodeID)),
        el("td", {}, info.NodeType),
        el("td", {}, badge(n.Membership)),
        el("td", {}, badge(n.Connection)),
        el("td", { class: "health" }, h === "ok" ? badge("ok") : h),
        el("td", {}, (c.ExecutionEngines || []).join(" ")),
        el("td", {}, cpu(free.CPU) + " / " + cpu(max.CPU)),
        el("td", {}, bytes(free.Memory) + " / " + bytes(max.Memory)),
        el("td", {}, (free.GPU || 0) + " / " + (max.GPU || 0)),
        el("td", {}, c.RunningExecutions || 0),
        el("td", {}, c.EnqueuedExecutions || 0),
        el("td", {}, p ? "cpu-s " + p.CPUSecond + ", mem-GB-s " + p.MemoryGBSecond + ", min " + p.MinPrice : "free"),
        el("td", {}, n.Dissents || 0),
        el("td", {},
          n.Membership !== "APPROVED" ? el("button", { class: "approve", onclick: () => act(info.NodeID, "approve") }, "Approve") : "",
          n.Membership !== "REJECTED" ? el("button", { class: "reject danger", onclick: () => act(info.NodeID, "reject") }, "Reject") : ""));
    }));
    showError(null);
  };
  await load();
  every(3000, load);
}

// ---- IPFS ---------------------------------------------------------------------------------

async function ipfsPage() {
  const id = el("dl", { class: "kv", id: "ipfs-id" });
  const body = el("tbody", { id: "pins-body" });
  render(el("h1", {}, "IPFS store"), id, el("h2", {}, "Pins"),
    el("table", { id: "pins" }, el("thead", {}, el("tr", {}, ["CID", "Size", "Labels", ""].map((h) => el("th", {}, h)))), body));
  const peer = await api("GET", "/api/v1/ipfs/id").catch((e) => ({ error: e.message }));
  id.replaceChildren(...Object.entries(peer).flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, Array.isArray(v) ? v.join("\n") : String(v))]));
  const pins = await api("GET", "/api/v1/ipfs/pins");
  let total = 0;
  body.replaceChildren(...pins.map((p) => {
    total += p.Size || 0;
    const cid = p.Cid || p.CID;
    return el("tr", { "data-cid": cid }, el("td", { class: "mono" }, cid), el("td", {}, p.Size === undefined ? "" : bytes(p.Size)),
      el("td", {}, (p.Labels || []).join(", ")), el("td", {}, downloadLink("/ipfs/" + cid + "?format=car", cid + ".car", "CAR")));
  }));
  id.append(el("dt", {}, "Pinned"), el("dd", { id: "pinned-total" }, pins.length + " DAGs, " + bytes(total)));
  showError(null);
}

// ---- Routing and sign-in ------------------------------------------------------------------

async function route() {
  stopTimers();
  actionFailed = false;
  showError(null);
  const hash = location.hash || "#/jobs";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  try {
    if (parts[0] === "nodes") await nodesPage();
    else if (parts[0] === "ipfs") await ipfsPage();
    else if (parts[0] === "jobs" && parts[1]) await jobPage(decodeURIComponent(parts[1]));
    else await jobsPage(params);
  } catch (e) {
    showError(e);
    if (e.status === 401 && !authHeader()) document.getElementById("login").showModal();
  }
}

function who() {
  const a = authHeader();
  document.getElementById("who").textContent = !a ? "" : a.startsWith("Bearer") ? "API key" : "user " + atob(a.slice(6)).split(":")[0];
  document.getElementById("signin").textContent = a ? "Account" : "Sign in";
}

function setup() {
  const dialog = document.getElementById("login");
  document.getElementById("signin").addEventListener("click", () => dialog.showModal());
  dialog.addEventListener("close", () => {
    const key = document.getElementById("login-key").value.trim();
    const user = document.getElementById("login-user").value.trim();
    const pass = document.getElementById("login-pass").value;
    if (dialog.returnValue === "out") sessionStorage.removeItem("bacalhau.auth");
    else if (dialog.returnValue === "ok" && key) sessionStorage.setItem("bacalhau.auth", "Bearer " + key);
    else if (dialog.returnValue === "ok" && user) sessionStorage.setItem("bacalhau.auth", "Basic " + btoa(user + ":" + pass));
    else return;
    for (const f of ["login-key", "login-user", "login-pass"]) document.getElementById(f).value = "";
    who();
    route();
  });
  window.addEventListener("hashchange", route);
  who();
  route();
}

document.addEventListener("DOMContentLoaded", setup);
