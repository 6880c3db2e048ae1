// The execution tree explorer. It speaks only to the gateway's GraphQL API on its own origin:
// queries and the cancel mutation over HTTP, live updates over the graphql-transport-ws
// WebSocket (the vendored graphql-ws client). Every piece of upstream text reaches the page
// through textContent or an attribute, never as markup.
(() => {
  "use strict";

  const STATUSES = [
    "PENDING", "QUEUED", "CLAIMED", "RUNNING", "WAITING",
    "PENDING_CANCEL", "COMPLETED", "FAILED", "CANCELLED", "UNKNOWN",
  ];
  const STATUS_HELP = {
    PENDING: "created, not queued yet",
    QUEUED: "waiting for a worker",
    CLAIMED: "a worker took it",
    RUNNING: "running now",
    WAITING: "waiting on something (a child, an event, a person)",
    PENDING_CANCEL: "cancellation asked for, not done yet",
    COMPLETED: "finished with a result",
    FAILED: "finished with an error",
    CANCELLED: "cancelled",
    UNKNOWN: "a status this gateway does not know",
  };
  const FIELDS = [
    "id", "workflowId", "status", "rawStatus", "isTerminal", "isRoot", "payload", "result",
    "error", "createdAt", "startedAt", "completedAt", "deploymentId", "assignedToWorker",
    "parentExecutionId", "rootExecutionId", "retryCount", "stepKey", "queueName",
    "concurrencyKey", "batchId", "sessionId", "userId", "outputSchemaName", "cancelledAt",
    "cancelledBy", "runTimeoutSeconds",
  ].join(" ");
  const FRAGMENT = `fragment ExplorerExecution on Execution { ${FIELDS} }`;
  const TREE_QUERY = `query ExplorerPath($id: ID!, $limit: Int!) {
  execution(id: $id) { ...ExplorerExecution ancestors(limit: $limit) { ...ExplorerExecution } }
}
${FRAGMENT}`;
  const LIVE_SUBSCRIPTION = `subscription ExplorerLive($id: ID!) {
  executionUpdated(id: $id) { ...ExplorerExecution }
}
${FRAGMENT}`;
  const CANCEL_MUTATION = `mutation ExplorerCancel($id: ID!) {
  cancelExecution(id: $id) { id status isTerminal cancelledAt cancelledBy }
}`;
  // The walk asks for this many ancestors first, and for FALLBACK_LIMIT when the gateway's
  // configured cap (or its cost limit) refuses that many.
  const ANCESTOR_LIMIT = 100;
  const FALLBACK_LIMIT = 10;
  const MAX_LIVE = 25;
  const STORAGE_KEY = "polos-explorer-credentials";
  const GRAPHQL_URL = new URL("graphql", document.baseURI);
  const WS_URL = (() => {
    const url = new URL(GRAPHQL_URL);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  })();

  const $ = (id) => document.getElementById(id);
  const els = {
    openForm: $("open-form"),
    idInput: $("execution-id"),
    credentials: $("credentials"),
    credentialsForm: $("credentials-form"),
    credentialsState: $("credentials-state"),
    apiKey: $("api-key"),
    projectId: $("project-id"),
    forget: $("forget-credentials"),
    samples: $("samples"),
    sampleList: $("sample-list"),
    problems: $("problems"),
    tree: $("tree"),
    treeHint: $("tree-hint"),
    details: $("details"),
    detailsBody: $("details-body"),
    liveState: $("live-state"),
    announcer: $("announcer"),
  };

  const state = {
    trail: [], // executions, root first, as the gateway last described them
    breakAbove: null, // the error that stopped the walk up, if it broke
    moreAbove: false, // the walk stopped at its limit below the root
    selectedId: null,
    problems: [], // [{title, errors}] of the last load
    actionResult: null, // {ok, text, errors} of the last cancel, for the selected id
    confirmingCancel: false,
    cancelling: false,
    open: new Set(["payload", "error"]), // which JSON sections are expanded
    loadSeq: 0,
    loading: false,
    live: new Map(), // id -> unsubscribe
    liveProblem: null,
    client: null,
  };

  // ---------------------------------------------------------------------------------------
  // JSON: numbers keep the text they were sent as (integers beyond 2^53 stay exact).

  class RawNumber {
    constructor(text) { this.text = text; }
    toJSON() { return Number(this.text); }
  }

  function reviver(key, value, context) {
    if (typeof value === "number" && context && typeof context.source === "string"
        && String(value) !== context.source) {
      return new RawNumber(context.source);
    }
    return value;
  }

  const parseJson = (text) => JSON.parse(text, reviver);

  // ---------------------------------------------------------------------------------------
  // Credentials: the cookie goes by itself; a pasted key stays in this tab's sessionStorage.

  function loadCredentials() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "{}");
      return {
        apiKey: typeof stored.apiKey === "string" ? stored.apiKey : "",
        projectId: typeof stored.projectId === "string" ? stored.projectId : "",
      };
    } catch {
      return { apiKey: "", projectId: "" };
    }
  }

  function credentialHeaders() {
    const { apiKey, projectId } = loadCredentials();
    const headers = {};
    if (apiKey) headers.Authorization = /^bearer\s/i.test(apiKey) ? apiKey : `Bearer ${apiKey}`;
    if (projectId) headers["X-Project-ID"] = projectId;
    return headers;
  }

  function showCredentialState() {
    const { apiKey, projectId } = loadCredentials();
    els.apiKey.value = apiKey;
    els.projectId.value = projectId;
    const parts = [];
    if (apiKey) parts.push("API key");
    if (projectId) parts.push(`project ${projectId}`);
    els.credentialsState.textContent = parts.length ? parts.join(", ") : "cookie only";
  }

  // ---------------------------------------------------------------------------------------
  // GraphQL over HTTP

  function failure(code, message) {
    return { message, extensions: { code } };
  }

  async function graphql(query, variables) {
    let response;
    try {
      response = await fetch(GRAPHQL_URL, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          ...credentialHeaders(),
        },
        body: JSON.stringify({ query, variables }),
      });
    } catch (error) {
      return { errors: [failure("NETWORK", `The gateway could not be reached (${error.message}).`)] };
    }
    const text = await response.text();
    let body = null;
    try {
      body = parseJson(text);
    } catch {
      body = null;
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return {
        errors: [failure(`HTTP_${response.status}`,
          `The gateway answered ${response.status} ${response.statusText} without a GraphQL body.`)],
      };
    }
    if (!("data" in body) && !Array.isArray(body.errors)) {
      const message = typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
      return { errors: [failure(`HTTP_${response.status}`, message)] };
    }
    return body;
  }

  const codeOf = (error) =>
    (error && error.extensions && typeof error.extensions.code === "string"
      ? error.extensions.code : "ERROR");
  const pathOf = (error) => (Array.isArray(error && error.path) ? error.path : []);

  // ---------------------------------------------------------------------------------------
  // Loading an execution and its path

  async function fetchPath(id) {
    let limit = ANCESTOR_LIMIT;
    for (;;) {
      const body = await graphql(TREE_QUERY, { id, limit });
      const errors = Array.isArray(body.errors) ? body.errors : [];
      const execution = body.data ? body.data.execution : null;
      const refused = errors.some((e) =>
        (codeOf(e) === "QUERY_TOO_COMPLEX" && !execution)
        || (codeOf(e) === "BAD_USER_INPUT" && pathOf(e).join(".") === "execution.ancestors"));
      if (refused && limit > FALLBACK_LIMIT) {
        limit = FALLBACK_LIMIT;
        continue;
      }
      return { execution, errors, limit };
    }
  }

  async function load(id, { keepSelection = false } = {}) {
    const seq = ++state.loadSeq;
    state.loading = true;
    if (!keepSelection) {
      state.actionResult = null;
      state.confirmingCancel = false;
    }
    showBusy();
    const { execution, errors, limit } = await fetchPath(id);
    if (seq !== state.loadSeq) return; // a later navigation won
    state.loading = false;
    state.problems = errors.length ? [{ title: problemTitle(execution, errors), errors }] : [];
    if (execution) {
      const ancestors = Array.isArray(execution.ancestors) ? execution.ancestors : [];
      const found = ancestors.filter((a) => a !== null && typeof a === "object");
      const broken = ancestors.length > found.length || execution.ancestors === null;
      state.breakAbove = broken
        ? errors.find((e) => pathOf(e)[0] === "execution" && pathOf(e)[1] === "ancestors")
          || failure("ERROR", "The walk up the tree stopped here.")
        : null;
      const top = found.length ? found[found.length - 1] : execution;
      state.moreAbove = !broken && found.length >= limit && !top.isRoot;
      const self = { ...execution };
      delete self.ancestors;
      const path = [...found.reverse(), self];
      // Going up keeps the way back down: the part of the old trail below this execution.
      const at = state.trail.findIndex((node) => node.id === self.id);
      const samePath = at >= 0 && at === path.length - 1
        && path.every((node, i) => state.trail[i].id === node.id);
      state.trail = samePath ? [...path, ...state.trail.slice(at + 1)] : path;
      state.selectedId = self.id;
      if (new URLSearchParams(location.search).get("id") !== self.id) {
        history.replaceState({ id: self.id }, "", `?id=${encodeURIComponent(self.id)}`);
      }
    } else {
      state.trail = [];
      state.breakAbove = null;
      state.moreAbove = false;
      state.selectedId = id;
    }
    render();
    syncLive();
  }

  function problemTitle(execution, errors) {
    if (!execution) return "The execution could not be read";
    if (errors.every((e) => pathOf(e)[1] === "ancestors")) return "Part of the path could not be read";
    return "Some of it could not be read";
  }

  function navigate(rawId, { push = true } = {}) {
    const id = String(rawId || "").trim();
    if (!id) {
      els.idInput.focus();
      return;
    }
    if (push && new URLSearchParams(location.search).get("id") !== id) {
      history.pushState({ id }, "", `?id=${encodeURIComponent(id)}`);
    }
    els.idInput.value = id;
    const known = state.trail.find((node) => node.id === id);
    if (known) {
      // Show what we have at once; the fresh copy follows.
      state.selectedId = id;
      state.actionResult = null;
      state.confirmingCancel = false;
      render();
    }
    load(id, { keepSelection: Boolean(known) });
  }

  // ---------------------------------------------------------------------------------------
  // Live updates

  function liveClient() {
    if (state.client) return state.client;
    if (!window.graphqlWs || typeof window.graphqlWs.createClient !== "function") {
      state.liveProblem = "the WebSocket client did not load";
      return null;
    }
    state.client = window.graphqlWs.createClient({
      url: WS_URL,
      lazy: true,
      lazyCloseTimeout: 1000,
      retryAttempts: 5,
      connectionParams: () => credentialHeaders(),
      jsonMessageReviver: reviver,
      on: {
        connected: () => {
          state.liveProblem = null;
          state.problems = state.problems.filter((p) => !p.socket);
          renderProblems();
          showLiveState();
        },
        closed: () => showLiveState(),
      },
    });
    return state.client;
  }

  function resetLive() {
    for (const stop of state.live.values()) stop();
    state.live.clear();
    if (state.client) state.client.dispose();
    state.client = null;
    state.liveProblem = null;
  }

  function syncLive() {
    const wanted = new Set(
      state.trail.filter((node) => !node.isTerminal).slice(-MAX_LIVE).map((node) => node.id));
    for (const [id, stop] of state.live) {
      if (!wanted.has(id)) {
        state.live.delete(id);
        stop();
      }
    }
    for (const id of wanted) {
      if (!state.live.has(id)) subscribe(id);
    }
    showLiveState();
  }

  function subscribe(id) {
    const client = liveClient();
    if (!client) {
      showLiveState();
      return;
    }
    let stop = null;
    const finished = () => {
      if (state.live.get(id) === stop) state.live.delete(id);
      showLiveState();
    };
    stop = client.subscribe({ query: LIVE_SUBSCRIPTION, variables: { id } }, {
      next: (message) => {
        const update = message && message.data ? message.data.executionUpdated : null;
        if (update) applyUpdate(update);
        if (Array.isArray(message && message.errors) && message.errors.length) {
          reportLiveErrors(id, message.errors);
        }
      },
      error: (error) => {
        finished();
        // GraphQL errors concern this execution; anything else is the connection itself.
        if (Array.isArray(error)) reportLiveErrors(id, error);
        else reportSocketProblem(error);
      },
      complete: finished,
    });
    state.live.set(id, stop);
  }

  function describeSocketError(error) {
    if (error && typeof error.code === "number" && "reason" in error) {
      const reason = error.reason ? `: ${error.reason}` : "";
      return `the WebSocket closed (code ${error.code}${reason})`;
    }
    if (error instanceof Error && error.message) return error.message;
    return "the WebSocket to /graphql could not be opened";
  }

  function reportSocketProblem(error) {
    const text = describeSocketError(error);
    state.liveProblem = text;
    state.problems = [
      ...state.problems.filter((p) => !p.socket),
      {
        title: "Live updates are unavailable; reload the page to try again",
        errors: [failure("WEBSOCKET", `${text[0].toUpperCase()}${text.slice(1)}.`)],
        socket: true,
      },
    ];
    renderProblems();
    showLiveState();
  }

  function reportLiveErrors(id, errors) {
    const node = state.trail.find((n) => n.id === id);
    const name = node ? node.workflowId : id;
    state.liveProblem = `${codeOf(errors[0])}: ${errors[0].message || "error"}`;
    state.problems = [
      ...state.problems.filter((p) => p.liveId !== id),
      { title: `Live updates for ${name} stopped`, errors, liveId: id },
    ];
    renderProblems();
    showLiveState();
  }

  function applyUpdate(update) {
    const index = state.trail.findIndex((node) => node.id === update.id);
    if (index < 0) return;
    const before = state.trail[index];
    state.trail[index] = { ...before, ...update };
    if (before.status !== update.status) {
      announce(`${update.workflowId || before.workflowId} is now ${update.status}.`);
    }
    if (update.isTerminal) {
      // A final status is the last one: the gateway completes the subscription after it.
      const stop = state.live.get(update.id);
      state.live.delete(update.id);
      if (stop) stop();
    }
    render();
  }

  // ---------------------------------------------------------------------------------------
  // Cancelling

  async function cancelSelected() {
    const id = state.selectedId;
    state.cancelling = true;
    state.confirmingCancel = false;
    state.actionResult = null;
    render();
    const body = await graphql(CANCEL_MUTATION, { id });
    state.cancelling = false;
    const result = body.data ? body.data.cancelExecution : null;
    const errors = Array.isArray(body.errors) ? body.errors : [];
    if (result) {
      const index = state.trail.findIndex((node) => node.id === result.id);
      if (index >= 0) state.trail[index] = { ...state.trail[index], ...result };
      state.actionResult = { ok: true, text: `Cancel sent; the gateway answered ${result.status}.`, errors };
      announce(`Cancellation requested; status ${result.status}.`);
    } else {
      state.actionResult = { ok: false, text: "The execution was not cancelled.", errors };
      announce("The execution was not cancelled.");
    }
    if (state.selectedId === id) render();
    syncLive();
  }

  // ---------------------------------------------------------------------------------------
  // Rendering (textContent only)

  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = value;
      else if (key === "className") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const knownStatus = (status) => (STATUSES.includes(status) ? status : "UNKNOWN");

  function badge(node) {
    const status = knownStatus(node.status);
    const title = status === "UNKNOWN" && node.rawStatus
      ? `${STATUS_HELP.UNKNOWN}: "${node.rawStatus}"` : STATUS_HELP[status];
    return h("span", { className: "badge", dataset: { status }, title, text: String(node.status) });
  }

  function codeBadge(code) {
    return h("span", { className: "code", text: code });
  }

  function parseTime(value) {
    if (typeof value !== "string") return null;
    const time = new Date(value);
    return Number.isNaN(time.getTime()) ? null : time;
  }

  function formatDuration(ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const seconds = ms / 1000;
    if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
  });

  function timeElement(value) {
    const time = parseTime(value);
    if (!time) return h("span", { className: "muted", text: "—" });
    return h("time", { datetime: value, title: value, text: dateFormat.format(time) });
  }

  // A duration that grows while the execution runs; the ticker keeps it current.
  function runningFor(since) {
    return h("span", {
      className: "ticking",
      dataset: { since: String(since.getTime()) },
      text: formatDuration(Date.now() - since.getTime()),
    });
  }

  function timing(node) {
    const created = parseTime(node.createdAt);
    const started = parseTime(node.startedAt);
    const completed = parseTime(node.completedAt);
    if (started && completed) return { label: "ran", value: formatDuration(completed - started) };
    if (started && !node.isTerminal) return { label: "running for", since: started };
    if (created && !started && !node.isTerminal) return { label: "waiting for", since: created };
    if (created && completed) return { label: "took", value: formatDuration(completed - created) };
    return null;
  }

  function timingElement(node) {
    const t = timing(node);
    if (!t) return null;
    return h("span", {}, `${t.label} `, t.since ? runningFor(t.since) : t.value);
  }

  const shortId = (id) => String(id).slice(0, 8);

  function renderTree() {
    const items = [];
    if (state.breakAbove) {
      items.push(h("li", { className: "node broken" },
        h("div", { className: "node-card" },
          h("span", { className: "node-title" }, codeBadge(codeOf(state.breakAbove)),
            h("span", { text: "The path up breaks here" })),
          h("span", { className: "node-meta", text: state.breakAbove.message || "" }))));
    } else if (state.moreAbove && state.trail.length) {
      const top = state.trail[0];
      items.push(h("li", { className: "node more" },
        h("div", { className: "node-card" },
          h("span", { className: "node-title", text: "More levels above" }),
          top.parentExecutionId
            ? h("a", {
              className: "node-meta",
              href: `?id=${encodeURIComponent(top.parentExecutionId)}`,
              dataset: { id: top.parentExecutionId, focusKey: `more:${top.parentExecutionId}` },
              text: "Continue up from the topmost shown",
            })
            : null)));
    }
    state.trail.forEach((node, depth) => {
      const selected = node.id === state.selectedId;
      const retries = Number(node.retryCount) || 0;
      const link = h("a", {
        className: "node-card node-link",
        href: `?id=${encodeURIComponent(node.id)}`,
        "aria-current": selected ? "page" : null,
        "aria-label": `${node.workflowId}, ${node.status}, level ${depth + 1}`
          + `${node.isRoot ? ", root" : ""}${selected ? ", selected" : ""}`,
        dataset: { id: node.id, focusKey: `node:${node.id}` },
      },
      h("span", { className: "node-title" },
        badge(node), h("span", { className: "workflow", text: node.workflowId })),
      h("span", { className: "node-meta" },
        h("code", { className: "short-id", text: shortId(node.id) }),
        node.stepKey ? h("span", { text: node.stepKey }) : null,
        timingElement(node),
        retries ? h("span", { className: "retries", text: `${retries} ${retries === 1 ? "retry" : "retries"}` }) : null,
        state.live.has(node.id) ? h("span", { className: "live-dot", text: "live" }) : null));
      const li = h("li", {
        className: `node${selected ? " selected" : ""}${depth ? " child" : ""}`,
        dataset: { status: knownStatus(node.status), id: node.id },
      }, link);
      li.style.setProperty("--depth", String(Math.min(depth, 12)));
      items.push(li);
    });
    els.tree.replaceChildren(...items);
    els.treeHint.textContent = state.trail.length
      ? `${state.trail.length} ${state.trail.length === 1 ? "level" : "levels"}, root first. `
        + "Arrow keys move along the path; Enter opens."
      : state.loading ? "Loading…" : "Open an execution to see its path.";
  }

  function jsonTokens(value, indent, out) {
    if (out.length > 40000) return;
    if (value instanceof RawNumber) {
      out.push(["number", value.text]);
    } else if (value === null) {
      out.push(["null", "null"]);
    } else if (Array.isArray(value)) {
      if (!value.length) { out.push(["punct", "[]"]); return; }
      out.push(["punct", "[\n"]);
      value.forEach((item, i) => {
        out.push(["", `${indent}  `]);
        jsonTokens(item, `${indent}  `, out);
        out.push(["punct", i < value.length - 1 ? ",\n" : "\n"]);
      });
      out.push(["punct", `${indent}]`]);
    } else if (typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) { out.push(["punct", "{}"]); return; }
      out.push(["punct", "{\n"]);
      keys.forEach((key, i) => {
        out.push(["", `${indent}  `], ["key", JSON.stringify(key)], ["punct", ": "]);
        jsonTokens(value[key], `${indent}  `, out);
        out.push(["punct", i < keys.length - 1 ? ",\n" : "\n"]);
      });
      out.push(["punct", `${indent}}`]);
    } else if (typeof value === "string") {
      out.push(["string", JSON.stringify(value)]);
    } else if (typeof value === "boolean") {
      out.push(["boolean", String(value)]);
    } else {
      out.push(["number", String(value)]);
    }
  }

  function jsonBlock(value) {
    const tokens = [];
    jsonTokens(value, "", tokens);
    const pre = h("pre", { className: "json", tabindex: "0" });
    if (tokens.length > 40000) {
      pre.textContent = JSON.stringify(value, null, 2);
      return pre;
    }
    for (const [kind, text] of tokens) {
      pre.append(kind ? h("span", { className: `j-${kind}`, text }) : document.createTextNode(text));
    }
    return pre;
  }

  function describeJson(value) {
    if (value === null || value === undefined) return "null";
    if (Array.isArray(value)) return `array, ${value.length} ${value.length === 1 ? "item" : "items"}`;
    if (value instanceof RawNumber) return "number";
    if (typeof value === "object") {
      const n = Object.keys(value).length;
      return `object, ${n} ${n === 1 ? "key" : "keys"}`;
    }
    return typeof value;
  }

  function section(key, title, summary, body) {
    const details = h("details", { className: "section", dataset: { section: key } },
      h("summary", {}, h("span", { className: "section-title", text: title }),
        h("span", { className: "muted", text: summary })),
      body);
    details.open = state.open.has(key);
    details.addEventListener("toggle", () => {
      if (details.open) state.open.add(key); else state.open.delete(key);
    });
    return details;
  }

  function fact(term, ...value) {
    return [h("dt", { text: term }), h("dd", {}, ...value)];
  }

  function idLink(id) {
    if (!id) return h("span", { className: "muted", text: "—" });
    return h("a", { href: `?id=${encodeURIComponent(id)}`, dataset: { id, focusKey: `fact:${id}` } },
      h("code", { text: id }));
  }

  function plain(value) {
    return value === null || value === undefined || value === ""
      ? h("span", { className: "muted", text: "—" })
      : h("span", { text: String(value) });
  }

  function cancelArea(node) {
    const area = h("div", { className: "actions" });
    if (!node.isTerminal) {
      if (state.cancelling) {
        area.append(h("button", { type: "button", className: "button danger", disabled: true, text: "Cancelling…" }));
      } else if (state.confirmingCancel) {
        area.append(
          h("span", { className: "confirm-text", text: "Cancel this execution?" }),
          h("button", {
            type: "button", className: "button danger", dataset: { focusKey: "cancel-confirm" },
            onclick: () => cancelSelected(), text: "Yes, cancel it",
          }),
          h("button", {
            type: "button", className: "button", dataset: { focusKey: "cancel-keep" },
            onclick: () => {
              state.confirmingCancel = false;
              render();
              focusKey("cancel");
            },
            text: "Keep it",
          }));
      } else {
        const requested = node.status === "PENDING_CANCEL";
        area.append(h("button", {
          type: "button", className: "button danger", dataset: { focusKey: "cancel" },
          disabled: requested,
          onclick: () => {
            state.confirmingCancel = true;
            render();
            focusKey("cancel-confirm");
          },
          text: requested ? "Cancellation requested" : "Cancel execution…",
        }));
      }
    }
    const result = state.actionResult;
    if (result) {
      area.append(h("div", { className: `action-result ${result.ok ? "ok" : "failed"}`, role: "status" },
        h("p", { text: result.text }), errorList(result.errors)));
    }
    return area.childNodes.length ? area : null;
  }

  function errorList(errors) {
    if (!errors || !errors.length) return null;
    return h("ul", { className: "error-list" }, errors.map((error) => {
      const path = pathOf(error).join(".");
      const upstream = error.extensions && error.extensions.upstreamStatus;
      return h("li", {},
        codeBadge(codeOf(error)),
        h("span", { className: "error-message", text: error.message || "(no message)" }),
        path ? h("span", { className: "muted", text: ` at ${path}` }) : null,
        upstream ? h("span", { className: "muted", text: ` (upstream answered ${upstream})` }) : null);
    }));
  }

  function renderDetails() {
    const node = state.trail.find((n) => n.id === state.selectedId);
    if (!node) {
      els.detailsBody.className = "details-empty";
      els.detailsBody.replaceChildren(h("p", {
        text: state.loading ? "Loading…"
          : state.selectedId ? "This execution could not be shown; see the problem above."
            : "Nothing open yet. Enter an execution id above or pick a sample.",
      }));
      document.title = "Execution explorer · polos-gateway";
      return;
    }
    document.title = `${node.workflowId} · ${node.status} · Execution explorer`;
    const created = parseTime(node.createdAt);
    const started = parseTime(node.startedAt);
    const retries = Number(node.retryCount) || 0;
    const live = state.live.has(node.id);
    const header = h("header", { className: "execution-header" },
      h("div", { className: "execution-title" },
        h("h3", { id: "selected-workflow", text: node.workflowId }),
        badge(node),
        live ? h("span", { className: "live-dot", text: "live" }) : null),
      h("p", { className: "execution-id" }, h("code", { text: node.id }),
        node.isRoot ? h("span", { className: "tag", text: "root" }) : null));
    const facts = h("dl", { className: "facts" },
      fact("Status", badge(node), node.rawStatus && node.rawStatus.toUpperCase() !== node.status
        ? h("span", { className: "muted", text: ` upstream says "${node.rawStatus}"` }) : null,
      h("span", { className: "muted", text: ` — ${STATUS_HELP[knownStatus(node.status)]}` })),
      fact("Created", timeElement(node.createdAt)),
      fact("Started", timeElement(node.startedAt),
        created && started ? h("span", { className: "muted", text: ` after ${formatDuration(started - created)} waiting` }) : null),
      fact("Completed", timeElement(node.completedAt)),
      fact("Duration", timingElement(node) || plain(null)),
      fact("Retries", h("span", { className: retries ? "retries" : "", text: String(retries) })),
      node.cancelledAt || node.cancelledBy
        ? fact("Cancelled", timeElement(node.cancelledAt),
          node.cancelledBy ? h("span", { className: "muted", text: ` by ${node.cancelledBy}` }) : null)
        : [],
      fact("Parent", idLink(node.parentExecutionId)),
      fact("Root", node.isRoot ? h("span", { className: "muted", text: "this one" }) : idLink(node.rootExecutionId)),
      fact("Step key", plain(node.stepKey)),
      fact("Queue", plain(node.queueName)),
      fact("Worker", plain(node.assignedToWorker)),
      fact("Deployment", plain(node.deploymentId)),
      fact("Timeout", plain(node.runTimeoutSeconds === null || node.runTimeoutSeconds === undefined
        ? null : `${node.runTimeoutSeconds} s`)),
      ...[["Concurrency key", node.concurrencyKey], ["Batch", node.batchId],
        ["Session", node.sessionId], ["User", node.userId],
        ["Output schema", node.outputSchemaName]]
        .filter(([, value]) => value !== null && value !== undefined && value !== "")
        .map(([term, value]) => fact(term, plain(value))));
    const sections = [
      section("payload", "Payload", describeJson(node.payload), jsonBlock(node.payload)),
      section("result", "Result", describeJson(node.result), jsonBlock(node.result)),
    ];
    if (node.error !== null && node.error !== undefined) {
      sections.push(section("error", "Error", `${String(node.error).length} characters`,
        h("pre", { className: "error-text", tabindex: "0", text: String(node.error) })));
    }
    els.detailsBody.className = "execution";
    els.detailsBody.replaceChildren(header, cancelArea(node) || "", facts, ...sections);
  }

  function renderProblems() {
    if (!state.problems.length) {
      els.problems.hidden = true;
      els.problems.replaceChildren();
      return;
    }
    els.problems.hidden = false;
    els.problems.replaceChildren(...state.problems.map((problem) =>
      h("div", { className: "problem" },
        h("p", { className: "problem-title", text: problem.title }),
        errorList(problem.errors))));
  }

  function showBusy() {
    els.tree.setAttribute("aria-busy", "true");
    els.details.setAttribute("aria-busy", "true");
    if (!state.trail.length) els.treeHint.textContent = "Loading…";
  }

  function showLiveState() {
    let text;
    let mode;
    const count = state.live.size;
    if (state.liveProblem && count === 0 && state.trail.some((n) => !n.isTerminal)) {
      text = `live updates unavailable (${state.liveProblem})`;
      mode = "problem";
    } else if (count) {
      text = `live: following ${count} ${count === 1 ? "execution" : "executions"}`;
      mode = "live";
    } else {
      text = "not live: nothing here is still running";
      mode = "idle";
    }
    els.liveState.textContent = text;
    els.liveState.dataset.state = mode;
  }

  function focusKey(key) {
    if (!key) return false;
    const target = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (target) target.focus();
    return Boolean(target);
  }

  function render() {
    // Rendering replaces elements; whoever had the focus gets it back on the new one.
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focusKey : null;
    els.tree.removeAttribute("aria-busy");
    els.details.removeAttribute("aria-busy");
    renderProblems();
    renderTree();
    renderDetails();
    showLiveState();
    if (key && !document.body.contains(active)) focusKey(key);
  }

  function announce(text) {
    els.announcer.textContent = "";
    // A new text node after a tick, so screen readers announce a repeat too.
    window.setTimeout(() => { els.announcer.textContent = text; }, 50);
  }

  async function loadSamples() {
    let samples = [];
    try {
      const response = await fetch(new URL("explorer/samples.json", document.baseURI),
        { credentials: "same-origin" });
      if (response.ok) {
        const body = await response.json();
        samples = Array.isArray(body.samples) ? body.samples : [];
      }
    } catch {
      samples = [];
    }
    const usable = samples.filter((s) => s && typeof s.id === "string" && typeof s.label === "string");
    els.samples.hidden = usable.length === 0;
    els.sampleList.replaceChildren(...usable.map((sample) => h("li", {},
      h("a", { href: `?id=${encodeURIComponent(sample.id)}`, dataset: { id: sample.id } },
        h("span", { className: "sample-label", text: sample.label }),
        h("code", { className: "short-id", text: shortId(sample.id) })))));
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function onLinkClick(event) {
    const link = event.target.closest("a[data-id]");
    if (!link || event.defaultPrevented || event.button !== 0
        || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.dataset.id);
  }

  function onTreeKey(event) {
    const links = [...els.tree.querySelectorAll("a.node-link")];
    const index = links.indexOf(document.activeElement);
    if (index < 0) return;
    let next = null;
    if (event.key === "ArrowDown") next = links[Math.min(index + 1, links.length - 1)];
    else if (event.key === "ArrowUp") next = links[Math.max(index - 1, 0)];
    else if (event.key === "Home") next = links[0];
    else if (event.key === "End") next = links[links.length - 1];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  }

  function tick() {
    for (const el of document.querySelectorAll(".ticking[data-since]")) {
      el.textContent = formatDuration(Date.now() - Number(el.dataset.since));
    }
  }

  function start() {
    document.addEventListener("click", onLinkClick);
    els.tree.addEventListener("keydown", onTreeKey);
    els.openForm.addEventListener("submit", (event) => {
      event.preventDefault();
      navigate(els.idInput.value);
    });
    els.credentialsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
        apiKey: els.apiKey.value.trim(), projectId: els.projectId.value.trim(),
      }));
      showCredentialState();
      announce("Credentials saved for this tab.");
      resetLive();
      if (state.selectedId) load(state.selectedId, { keepSelection: true });
    });
    els.forget.addEventListener("click", () => {
      sessionStorage.removeItem(STORAGE_KEY);
      showCredentialState();
      announce("Credentials forgotten.");
      resetLive();
      if (state.selectedId) load(state.selectedId, { keepSelection: true });
    });
    window.addEventListener("popstate", () => {
      const id = new URLSearchParams(location.search).get("id");
      if (id) {
        navigate(id, { push: false });
        return;
      }
      state.loadSeq += 1;
      state.trail = [];
      state.selectedId = null;
      state.problems = [];
      state.breakAbove = null;
      state.moreAbove = false;
      els.idInput.value = "";
      render();
      syncLive();
    });
    window.setInterval(tick, 1000);
    showCredentialState();
    showLiveState();
    loadSamples();
    const id = new URLSearchParams(location.search).get("id");
    if (id) navigate(id, { push: false });
  }

  start();
})();
