// HTTP/2 load with Node's http2 client: N requests, C at a time, over one session
// at a time; a session that received GOAWAY is left to finish and a new one opened.
// Usage: node h2load.js URL N C [CA_FILE]   Prints one JSON object on stdout.
"use strict";
const http2 = require("http2");
const fs = require("fs");

const [url, nArg, cArg, caFile] = process.argv.slice(2);
const total = Number(nArg);
const concurrency = Number(cArg);
const options = caFile ? { ca: fs.readFileSync(caFile) } : {};

let session = null;
let sessions = 0;
const goaways = [];
const moved = [];
let lastGoaway = null;
let retried = 0;
const retryReasons = {};
const outcomes = {};
const sessionList = [];

function current() {
  if (session && !session.goingAway && !session.closed && !session.destroyed) return session;
  const s = http2.connect(url, options);
  s.number = ++sessions;
  s.goingAway = false;
  s.on("goaway", (code, lastId, data) => {
    s.goingAway = true;
    goaways.push({ conn: s.number, code, lastId, debug: data ? data.toString() : "" });
    if (lastGoaway === null) lastGoaway = process.hrtime.bigint();
  });
  s.on("error", () => {});
  if (lastGoaway !== null) {
    moved.push(Number(process.hrtime.bigint() - lastGoaway) / 1e6);
    lastGoaway = null;
  }
  sessionList.push(s);
  session = s;
  return s;
}

function once(i, attempt) {
  return new Promise((resolve) => {
    let s;
    let req;
    try {
      s = current();
      req = s.request({ ":path": `/load/${i}` });
    } catch (err) {
      resolve({ retry: true, error: String(err.code || err) });
      return;
    }
    let status = 0;
    const chunks = [];
    req.on("response", (h) => { status = h[":status"]; });
    req.on("data", (c) => chunks.push(c));
    req.on("close", () => {
      // A stream closed without a response was not processed when the server
      // refused it (REFUSED_STREAM, or above a GOAWAY's last stream id): retry it.
      if (status === 0) resolve({ retry: req.rstCode === 7, error: `closed without response, rstCode ${req.rstCode}`, conn: s.number });
      else resolve({ status, body: Buffer.concat(chunks).toString(), conn: s.number, rst: req.rstCode });
    });
    req.on("error", (err) => {
      const refused = String(err.message || "").includes("REFUSED_STREAM") || err.code === "ERR_HTTP2_GOAWAY_SESSION";
      resolve({ retry: refused, error: String(err.code || err.message), conn: s.number });
    });
    req.end();
  });
}

async function one(i) {
  let result;
  for (let attempt = 0; attempt < 3; attempt++) {
    result = await once(i, attempt);
    if (!result.retry) break;
    retried++;
    retryReasons[result.error] = (retryReasons[result.error] || 0) + 1;
  }
  outcomes[i] = { status: result.status || 0, body: result.body || "", conn: result.conn || 0, error: result.error || "" };
}

async function main() {
  const start = process.hrtime.bigint();
  let next = 0;
  async function worker() {
    while (next < total) {
      const i = next++;
      await one(i);
    }
  }
  const timer = setTimeout(() => { finish(start, "deadline"); }, 30000);
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(timer);
  finish(start, "");
}

function finish(start, why) {
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({ connections: sessions, retried, retryReasons, goaways, moved, outcomes, elapsed, why }) + "\n");
  for (const s of sessionList) s.destroy();
  process.exit(0);
}

main();
