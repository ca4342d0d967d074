// The async relay of proj: it subscribes to the Redis channel that the Celery tasks
// publish on, and passes every message to the browsers listening on GET /events
// (Server-Sent Events). GET /health answers 200 while the subscription is live.
//
// Only node's own modules: http for the clients, net and a small RESP reader for Redis.
//
// Environment: PORT (default 8001), HOST (default 127.0.0.1), REDIS_URL
// (default redis://127.0.0.1:6379/0), EVENTS_CHANNEL (default proj:events).

"use strict";

const http = require("http");
const net = require("net");

const PORT = Number(process.env.PORT || 8001);
const HOST = process.env.HOST || "127.0.0.1";
const REDIS_URL = new URL(process.env.REDIS_URL || "redis://127.0.0.1:6379/0");
const CHANNEL = process.env.EVENTS_CHANNEL || "proj:events";
const RETRY_MS = 1000;
const MAX_BUFFER = 1 << 20;

const clients = new Set();
let subscribed = false;

function log(msg) {
  process.stdout.write(`asyncserver: ${msg}\n`);
}

// One RESP value from the start of buf: [value, bytes used], or null if incomplete.
function parse(buf, at = 0) {
  if (buf.length <= at) return null;
  const end = buf.indexOf("\r\n", at);
  if (end < 0) return null;
  const kind = String.fromCharCode(buf[at]);
  const line = buf.toString("utf8", at + 1, end);
  const next = end + 2;
  switch (kind) {
    case "+":
    case "-":
    case ":":
      return [kind === ":" ? Number(line) : line, next];
    case "$": {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString("utf8", next, next + n), next + n + 2];
    }
    case "*": {
      const n = Number(line);
      const items = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, pos);
        if (item === null) return null;
        items.push(item[0]);
        pos = item[1];
      }
      return [items, pos];
    }
    default:
      throw new Error(`unexpected reply from Redis: ${JSON.stringify(line)}`);
  }
}

function command(...args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return out;
}

function broadcast(message) {
  for (const res of clients) res.write(`data: ${message}\n\n`);
}

function subscribe() {
  const sock = net.connect(Number(REDIS_URL.port || 6379), REDIS_URL.hostname);
  let buf = Buffer.alloc(0);
  sock.on("connect", () => {
    if (REDIS_URL.password) {
      const user = decodeURIComponent(REDIS_URL.username || "default");
      sock.write(command("AUTH", user, decodeURIComponent(REDIS_URL.password)));
    }
    sock.write(command("SUBSCRIBE", CHANNEL));
  });
  sock.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    if (buf.length > MAX_BUFFER) {
      sock.destroy(new Error("reply too large"));
      return;
    }
    try {
      for (let v = parse(buf); v !== null; v = parse(buf)) {
        buf = buf.subarray(v[1]);
        const [kind, channel, payload] = Array.isArray(v[0]) ? v[0] : [];
        if (kind === "subscribe" && channel === CHANNEL) {
          subscribed = true;
          log(`subscribed to ${CHANNEL}`);
        } else if (kind === "message" && channel === CHANNEL) {
          broadcast(payload);
        } else if (typeof v[0] === "string" && v[0].startsWith("ERR")) {
          log(`Redis: ${v[0]}`);
        }
      }
    } catch (e) {
      sock.destroy(e);
    }
  });
  sock.on("error", (e) => log(`Redis: ${e.message}`));
  sock.on("close", () => {
    if (subscribed) log("lost Redis; reconnecting");
    subscribed = false;
    setTimeout(subscribe, RETRY_MS);
  });
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, "http://localhost").pathname;
  if (req.method === "GET" && path === "/health") {
    res.writeHead(subscribed ? 200 : 503, { "Content-Type": "text/plain" });
    res.end(subscribed ? "ok\n" : "no Redis subscription\n");
  } else if (req.method === "GET" && path === "/events") {
    res.writeHead(200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
    });
    res.write(": listening\n\n");
    clients.add(res);
    req.on("close", () => clients.delete(res));
  } else {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
  }
});

server.on("error", (e) => {
  log(`cannot listen on ${HOST}:${PORT}: ${e.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => log(`listening on ${HOST}:${PORT}`));
subscribe();

function stop(signal) {
  log(`${signal}: closing`);
  for (const res of clients) res.end();
  server.close(() => process.exit(0));
  // Idle keep-alive connections would hold close() open.
  server.closeAllConnections();
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
