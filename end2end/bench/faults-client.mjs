// The fault scenarios' clients (end2end/bench/faults.sh): CONNECTIONS
// loops, each sending the 1-credit sentiment call again as soon as the last
// one is answered, until SECONDS have passed; calls in flight at the end
// are waited for, so "the 200s the clients saw" is exact. Writes the
// request id of every 200 to OUT, one per line, and prints the counts by
// status (and the calls that failed without an answer) as JSON.
// Usage: node faults-client.mjs URL KEY SECONDS CONNECTIONS OUT
import fs from 'node:fs';
import http from 'node:http';

const [url, key, seconds, connections, out] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(connections) });
const body = JSON.stringify({ text: 'Great docs and a fast, reliable API.' });
const deadline = Date.now() + Number(seconds) * 1000;
const seen = [];
const counts = {};
let failed = 0;

function call() {
  return new Promise((resolve) => {
    const req = http.request(url, {
      method: 'POST',
      agent,
      timeout: 60_000,
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        counts[res.statusCode] = (counts[res.statusCode] || 0) + 1;
        if (res.statusCode === 200) seen.push(res.headers['request-id']);
        resolve();
      });
      res.on('error', () => { failed++; resolve(); });
    });
    // A refused or reset connection (an instance killed or restarting):
    // counted, and tried again shortly.
    req.on('error', () => { failed++; setTimeout(resolve, 20); });
    req.on('timeout', () => req.destroy());
    req.end(body);
  });
}

async function client() {
  while (Date.now() < deadline) await call();
}

await Promise.all(Array.from({ length: Number(connections) }, client));
fs.writeFileSync(out, seen.length ? seen.join('\n') + '\n' : '');
console.log(JSON.stringify({ counts, failed }));
process.exit(0);
