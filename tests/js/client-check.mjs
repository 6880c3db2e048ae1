// Real GraphQL clients against a live gateway, as a frontend would use them.
//
//   node client-check.mjs <gateway url> [--parts query,apq,subscription,cancel]
//                         [--leaf <id>] [--live <id>] [--cancel <id>]
//                         [--header 'Name: value' ...] [--timeout <seconds>]
//
// Prints exactly one JSON line on stdout: what each part saw (counts, ids, statuses, error
// codes), for tests/test_js_client.py to assert on. Diagnostics go to stderr. It exits 0 when
// every part ran, 1 when the arguments are wrong, 2 when a part threw (the line says which).
//
// The parts:
//   query         Apollo Client over HTTP: an execution with parent, root and ancestors (--leaf);
//                 a list through executions(ids) with entries failing on their own.
//   apq           automatic persisted queries: Apollo's persisted-query link over POST and over
//                 GET (useGETForHashedQueries), urql's persistedExchange, then raw hash-only
//                 requests and /metrics, to see the gateway's side of it.
//   subscription  executionUpdated(--live) through Apollo's GraphQLWsLink over graphql-ws, until
//                 it completes; waits for events, never for a fixed time (--timeout overall).
//   cancel        watch --cancel, cancelExecution it on the first event, follow it to the end,
//                 then cancel it again, now that it is final.
//
// --header goes on every HTTP request and, under the same name, into connection_init.

import { createHash, webcrypto } from "node:crypto";

import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  gql,
} from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { Client as UrqlClient, cacheExchange, fetchExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { OperationTypeNode } from "graphql";
import { createClient as createWsClient } from "graphql-ws";
import WebSocketFromWs from "ws";

// The queries a frontend's screens send; docs/frontend.md shows these same documents.

// An execution detail page with its breadcrumb: the tree walk.
const TREE = gql`
  query Tree($id: ID!) {
    execution(id: $id) {
      id
      workflowId
      status
      isRoot
      createdAt
      parent { id workflowId status }
      root { id workflowId status }
      ancestors(limit: 10) { id workflowId status }
    }
  }
`;

// A list: one entry per id, in order, null where that one failed (with its own error).
const LIST = gql`
  query List($ids: [ID!]!) {
    executions(ids: $ids) {
      id
      workflowId
      status
      isTerminal
    }
  }
`;

// A breadcrumb alone, sent as an automatic persisted query.
const BREADCRUMB = gql`
  query Breadcrumb($id: ID!) {
    execution(id: $id) {
      id
      workflowId
      ancestors(limit: 10) { id workflowId }
    }
  }
`;

// The detail page's header, sent as a persisted query over GET (cacheable by a CDN).
const HEADER = gql`
  query Header($id: ID!) {
    execution(id: $id) {
      id
      workflowId
      status
      root { id workflowId }
    }
  }
`;

// The same header for urql (a document of its own, so its hash is new to the gateway).
const URQL_HEADER = `
  query UrqlHeader($id: ID!) {
    execution(id: $id) {
      id
      workflowId
      status
    }
  }
`;

// A live status: one event per change, completes after a final status.
const WATCH = gql`
  subscription Watch($id: ID!) {
    executionUpdated(id: $id) {
      id
      status
      isTerminal
      startedAt
      completedAt
    }
  }
`;

// Node before 22 has no global WebSocket: ws is the same API. Global, because Apollo's
// GraphQLWsLink also reads WebSocket.CLOSED when a socket fails.
const webSocket = globalThis.WebSocket ? "global" : "ws";
globalThis.WebSocket ??= WebSocketFromWs;

// A Cancel button: the execution as it is right after, PENDING_CANCEL until the worker confirms.
const CANCEL = gql`
  mutation Cancel($id: ID!) {
    cancelExecution(id: $id) {
      id
      status
      isTerminal
      cancelledAt
      cancelledBy
    }
  }
`;

const UNKNOWN_ID = "00000000-0000-4000-8000-000000000000";
const NOT_A_UUID = "not-a-uuid";
const PARTS = ["query", "apq", "subscription", "cancel"];

function usage(message) {
  process.stderr.write(`client-check: ${message}\n`);
  process.exit(1);
}

function parseArguments(argv) {
  const options = { headers: {}, parts: PARTS, timeout: 120 };
  const rest = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === "--leaf") options.leaf = value();
    else if (arg === "--live") options.live = value();
    else if (arg === "--cancel") options.cancel = value();
    else if (arg === "--timeout") options.timeout = Number(value());
    else if (arg === "--parts") options.parts = value().split(",").filter(Boolean);
    else if (arg === "--header") {
      const text = value();
      const colon = text.indexOf(":");
      if (colon < 1) usage(`--header takes 'Name: value', not ${JSON.stringify(text)}`);
      options.headers[text.slice(0, colon).trim()] = text.slice(colon + 1).trim();
    } else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else rest.push(arg);
  }
  if (rest.length !== 1) usage("give the gateway's base URL, e.g. http://127.0.0.1:8000");
  options.url = rest[0].replace(/\/+$/, "");
  for (const part of options.parts) {
    if (!PARTS.includes(part)) usage(`unknown part ${part}; parts are ${PARTS.join(",")}`);
  }
  if (options.parts.some((p) => p === "query" || p === "apq") && !options.leaf) {
    usage("--leaf <execution id> is needed for the query and apq parts");
  }
  if (options.parts.includes("subscription") && !options.live) {
    usage("--live <execution id> is needed for the subscription part");
  }
  if (options.parts.includes("cancel") && !options.cancel) {
    usage("--cancel <execution id> is needed for the cancel part");
  }
  if (!(options.timeout > 0)) usage("--timeout takes a positive number of seconds");
  return options;
}

// Node's hash, for the clients that run in Node only.
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

// A browser's hash (Web Crypto), for the app client, which a page would run as it is. Node 18
// has Web Crypto only as node:crypto's webcrypto, later ones as the global crypto too.
const subtle = (globalThis.crypto ?? webcrypto).subtle;
async function browserSha256(text) {
  const digest = await subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// --- a fetch that keeps a log of what went over the wire ------------------------------------

/** What one HTTP request to /graphql carried and what came back, without the data itself. */
async function describeExchange(input, init, response) {
  const url = new URL(typeof input === "string" ? input : input.url);
  const method = (init?.method ?? "GET").toUpperCase();
  let sent = {};
  if (method === "GET") {
    const extensions = url.searchParams.get("extensions");
    sent = {
      query: url.searchParams.get("query"),
      extensions: extensions ? JSON.parse(extensions) : undefined,
    };
  } else if (typeof init?.body === "string") {
    sent = JSON.parse(init.body);
  }
  let codes = [];
  let messages = [];
  let hasData = false;
  try {
    const body = await response.clone().json();
    codes = (body.errors ?? []).map((e) => e.extensions?.code ?? null);
    messages = (body.errors ?? []).map((e) => e.message);
    hasData = body.data != null;
  } catch {
    codes = ["<not json>"];
  }
  return {
    method,
    status: response.status,
    withQuery: typeof sent.query === "string" && sent.query.length > 0,
    hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
    query: sent.query ?? null,
    codes,
    messages,
    hasData,
    cacheControl: response.headers.get("cache-control"),
  };
}

function loggingFetch(log) {
  return async (input, init) => {
    const response = await fetch(input, init);
    log.push(await describeExchange(input, init, response));
    return response;
  };
}

/** The log as the test reads it: no query texts, the hash only as whether there was one. */
const summary = (log) =>
  log.map(({ method, status, withQuery, hash, codes, hasData, cacheControl }) => ({
    method,
    status,
    withQuery,
    withHash: hash !== null,
    codes,
    hasData,
    cacheControl,
  }));

// --- Apollo Client ----------------------------------------------------------------------------

function httpLink(options, log) {
  return new HttpLink({
    uri: `${options.url}/graphql`,
    headers: options.headers,
    fetch: loggingFetch(log),
  });
}

/** A plain client: every operation a POST with its whole document. */
function plainClient(options, log) {
  return new ApolloClient({ link: httpLink(options, log), cache: new InMemoryCache() });
}

const wsUrl = (options) => `${options.url.replace(/^http/, "ws")}/graphql`;

/**
 * The client docs/frontend.md sets up: queries as persisted hashes sent by GET (the document
 * itself only when the gateway asks for it), subscriptions over graphql-ws, the same
 * credentials on both.
 */
function appClient(options, log, on = {}) {
  const http = new HttpLink({
    uri: `${options.url}/graphql`,
    headers: options.headers,
    fetch: loggingFetch(log),
  });
  const persisted = createPersistedQueryLink({
    sha256: browserSha256,
    useGETForHashedQueries: true,
  });
  const wsClient = createWsClient({
    url: wsUrl(options),
    // connection_init carries the credentials, under the names the HTTP headers have.
    connectionParams: options.headers,
    retryAttempts: 0,
    on,
  });
  const link = ApolloLink.split(
    ({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION,
    new GraphQLWsLink(wsClient),
    persisted.concat(http),
  );
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), wsClient };
}

const errorsOf = (error) =>
  CombinedGraphQLErrors.is(error)
    ? error.errors.map((e) => ({
        path: (e.path ?? []).join("."),
        code: e.extensions?.code ?? null,
      }))
    : [];

/** A GraphQL error's codes, or any other error's message. */
const problems = (error) =>
  CombinedGraphQLErrors.is(error)
    ? errorsOf(error).map((e) => e.code)
    : [String(error?.message ?? error)];

async function queryPart(options) {
  const log = [];
  const client = plainClient(options, log);

  const tree = await client.query({ query: TREE, variables: { id: options.leaf } });
  const execution = tree.data.execution;

  // errorPolicy "all": the entries that did resolve come back beside the errors of the rest.
  const ids = [options.leaf, UNKNOWN_ID, NOT_A_UUID];
  const list = await client.query({ query: LIST, variables: { ids }, errorPolicy: "all" });

  // Asked again, the tree comes from Apollo's normalized cache: no request.
  const before = log.length;
  const again = await client.query({ query: TREE, variables: { id: options.leaf } });

  return {
    tree: {
      id: execution.id,
      workflowId: execution.workflowId,
      status: execution.status,
      isRoot: execution.isRoot,
      parent: execution.parent?.id ?? null,
      root: execution.root?.id ?? null,
      ancestors: execution.ancestors.map((a) => a?.id ?? null),
      ancestorWorkflows: execution.ancestors.map((a) => a?.workflowId ?? null),
    },
    list: {
      entries: list.data.executions.map((e) => (e ? e.id : null)),
      errors: errorsOf(list.error),
    },
    cachedAgain: again.data.execution.id === execution.id && log.length === before,
    requests: log.length,
  };
}

// --- automatic persisted queries --------------------------------------------------------------

/** Hashes by POST: the persisted-query link's default. */
function postPersistedClient(options, log) {
  const persisted = createPersistedQueryLink({ sha256 });
  return new ApolloClient({
    link: persisted.concat(httpLink(options, log)),
    cache: new InMemoryCache(),
  });
}

/** Hashes by GET: the app client, its WebSocket never opened (graphql-ws connects lazily). */
function getPersistedClient(options, log) {
  const { client, wsClient } = appClient(options, log);
  return { client, dispose: () => wsClient.dispose() };
}

/** Two fresh Apollo clients ask the same query: the first teaches the gateway, the second not. */
async function apolloPersisted(options, query, makeClient) {
  const ask = async (log) => {
    const made = makeClient(options, log);
    const client = made instanceof ApolloClient ? made : made.client;
    try {
      return await client.query({ query, variables: { id: options.leaf } });
    } finally {
      await made.dispose?.();
    }
  };
  const first = [];
  const firstResult = await ask(first);
  const second = [];
  const secondResult = await ask(second);
  const taught = first.find((r) => r.withQuery);
  return {
    first: summary(first),
    second: summary(second),
    sameAnswer:
      JSON.stringify(firstResult.data) === JSON.stringify(secondResult.data) &&
      firstResult.data.execution.id === options.leaf,
    // The hash Apollo sent is the sha256 of the query text it sent with it.
    hashMatchesQuery: taught !== undefined && sha256(taught.query) === taught.hash,
    hash: taught?.hash ?? first[0]?.hash ?? null,
  };
}

async function urqlPersisted(options) {
  const run = async () => {
    const log = [];
    const client = new UrqlClient({
      url: `${options.url}/graphql`,
      exchanges: [cacheExchange, persistedExchange({ preferGetForPersistedQueries: true }), fetchExchange],
      fetch: loggingFetch(log),
      fetchOptions: { headers: options.headers },
      requestPolicy: "network-only",
    });
    const result = await client.query(URQL_HEADER, { id: options.leaf }).toPromise();
    return { log, result };
  };
  const first = await run();
  const second = await run();
  return {
    first: summary(first.log),
    second: summary(second.log),
    sameAnswer:
      first.result.error === undefined &&
      second.result.error === undefined &&
      JSON.stringify(first.result.data) === JSON.stringify(second.result.data) &&
      first.result.data?.execution?.id === options.leaf,
  };
}

/** The gateway's own word, without any client library: hash-only requests, raw. */
async function rawHashOnly(options, hash, method) {
  const extensions = { persistedQuery: { version: 1, sha256Hash: hash } };
  const variables = { id: options.leaf };
  const headers = { ...options.headers, Accept: "application/json" };
  let response;
  if (method === "GET") {
    const params = new URLSearchParams({
      extensions: JSON.stringify(extensions),
      variables: JSON.stringify(variables),
    });
    response = await fetch(`${options.url}/graphql?${params}`, { headers });
  } else {
    response = await fetch(`${options.url}/graphql`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ extensions, variables }),
    });
  }
  const body = await response.json();
  return {
    method,
    status: response.status,
    id: body.data?.execution?.id ?? null,
    codes: (body.errors ?? []).map((e) => e.extensions?.code ?? null),
    messages: (body.errors ?? []).map((e) => e.message),
  };
}

/** Every sample of /metrics whose name speaks of persisted queries, summed over its labels. */
async function persistedMetrics(options) {
  const response = await fetch(`${options.url}/metrics`);
  const totals = {};
  for (const line of (await response.text()).split("\n")) {
    if (line.startsWith("#")) continue;
    const match = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || !/persisted/i.test(match[1]) || match[1].endsWith("_created")) continue;
    const key = `${match[1]}${match[2] ?? ""}`;
    totals[key] = (totals[key] ?? 0) + Number(match[3]);
  }
  return totals;
}

async function apqPart(options) {
  const metricsBefore = await persistedMetrics(options);
  const post = await apolloPersisted(options, BREADCRUMB, postPersistedClient);
  const get = await apolloPersisted(options, HEADER, getPersistedClient);
  const urql = await urqlPersisted(options);
  const raw = [
    await rawHashOnly(options, post.hash, "POST"),
    await rawHashOnly(options, get.hash, "GET"),
    // A hash the gateway was never taught.
    await rawHashOnly(options, sha256(`query Never { __typename } # ${Date.now()}`), "POST"),
  ];
  const metricsAfter = await persistedMetrics(options);
  const metrics = {};
  for (const key of new Set([...Object.keys(metricsBefore), ...Object.keys(metricsAfter)])) {
    metrics[key] = (metricsAfter[key] ?? 0) - (metricsBefore[key] ?? 0);
  }
  return { post, get, urql, raw, metrics };
}

// --- subscriptions ----------------------------------------------------------------------------

/**
 * Follow executionUpdated(id) until it completes, ends in an error, or the overall timeout;
 * ``onEvent`` sees each execution as it arrives.
 */
async function follow(client, options, id, onEvent = () => {}) {
  const events = [];
  const errors = [];
  let completed = false;
  let timedOut = false;
  await new Promise((resolve) => {
    let subscription = null;
    const timer = setTimeout(() => {
      timedOut = true;
      subscription?.unsubscribe();
      resolve();
    }, options.timeout * 1000);
    subscription = client.subscribe({ query: WATCH, variables: { id } }).subscribe({
      // Apollo Client 4 hands a subscription's errors, GraphQL or socket, to next().
      next: (result) => {
        if (result.error) errors.push(...problems(result.error));
        const execution = result.data?.executionUpdated;
        if (execution) {
          events.push({
            id: execution.id,
            status: execution.status,
            isTerminal: execution.isTerminal,
            started: execution.startedAt !== null,
            completed: execution.completedAt !== null,
          });
          onEvent(execution);
        }
      },
      error: (error) => {
        errors.push(...problems(error));
        clearTimeout(timer);
        resolve();
      },
      complete: () => {
        completed = true;
        clearTimeout(timer);
        resolve();
      },
    });
  });
  const statuses = events.map((e) => e.status);
  return {
    events: events.length,
    statuses,
    distinctStatuses: [...new Set(statuses)],
    ids: [...new Set(events.map((e) => e.id))],
    last: events.at(-1) ?? null,
    completed,
    timedOut,
    errors,
  };
}

async function subscriptionPart(options) {
  const protocol = [];
  const log = [];
  const { client, wsClient } = appClient(options, log, {
    connected: () => protocol.push("connected"),
    error: () => protocol.push("error"),
  });
  try {
    const followed = await follow(client, options, options.live);
    // Everything went over the WebSocket: no HTTP request at all.
    return { ...followed, protocol, httpRequests: log.length };
  } finally {
    await wsClient.dispose();
  }
}

/** A Cancel button on a live page: cancel what is being watched, see it end as cancelled. */
async function cancelPart(options) {
  const log = [];
  const { client, wsClient } = appClient(options, log);
  let cancelled = null;
  try {
    const followed = await follow(client, options, options.cancel, (execution) => {
      if (cancelled === null && !execution.isTerminal) {
        cancelled = client
          .mutate({ mutation: CANCEL, variables: { id: options.cancel }, errorPolicy: "all" })
          .then(({ data, error }) => ({
            status: data?.cancelExecution?.status ?? null,
            cancelledBy: data?.cancelExecution?.cancelledBy ?? null,
            errors: error ? problems(error) : [],
          }));
      }
    });
    const first = cancelled === null ? null : await cancelled;
    // Once final, an execution cannot be cancelled: the UI greys the button out.
    const again = await client.mutate({
      mutation: CANCEL,
      variables: { id: options.cancel },
      errorPolicy: "all",
    });
    return {
      ...followed,
      mutation: first,
      again: {
        data: again.data?.cancelExecution ?? null,
        errors: again.error ? errorsOf(again.error) : [],
      },
    };
  } finally {
    await wsClient.dispose();
  }
}

// --- main -------------------------------------------------------------------------------------

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const report = { node: process.versions.node, webSocket };
  const runners = {
    query: queryPart,
    apq: apqPart,
    subscription: subscriptionPart,
    cancel: cancelPart,
  };
  let failed = false;
  for (const part of options.parts) {
    try {
      report[part] = await runners[part](options);
    } catch (error) {
      failed = true;
      process.stderr.write(`client-check: the ${part} part failed: ${error?.stack ?? error}\n`);
      report[part] = { failed: String(error?.message ?? error), codes: errorsOf(error) };
    }
  }
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(failed ? 2 : 0));
}

await main();
