// MQTT.js over TLS (mqtts://) against a broker: server verified with the
// test CA, optionally a client certificate; a small and a 2 MiB message go
// out and come back. Usage: node tls.js <port> <ca> [<cert> <key>]
// Prints one JSON object; exits 0 when the run completed, 1 on an error,
// 2 when its own deadline passed (it never hangs).
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const mqtt = require('mqtt');

const [port, ca, cert, key] = process.argv.slice(2);
const result = {};
const deadline = setTimeout(() => {
  result.error = 'deadline passed';
  console.log(JSON.stringify(result));
  process.exit(2);
}, 20000);

async function main() {
  const opts = {
    ca: fs.readFileSync(ca),
    protocolVersion: 5,
    clientId: `node-tls-${process.pid}`,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  };
  if (cert) {
    opts.cert = fs.readFileSync(cert);
    opts.key = fs.readFileSync(key);
  }
  const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, opts);
  result.protocol = c.stream.getProtocol();
  const topic = `tls/node/${process.pid}`;
  await c.subscribeAsync(topic, { qos: 1 });
  const big = crypto.randomBytes(2 * 1024 * 1024);
  const got = new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(() => reject(new Error(`got ${seen.length}/2 messages`)), 10000);
    c.on('message', (t, payload) => {
      seen.push(payload);
      if (seen.length === 2) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
  await c.publishAsync(topic, 'small', { qos: 1 });
  await c.publishAsync(topic, big, { qos: 1 });
  const [a, b] = await got;
  result.small = a.toString('utf8');
  result.bigSame = Buffer.compare(b, big) === 0;
  result.bigLength = b.length;
  await c.endAsync();
  result.ok = true;
}

main().then(() => {
  clearTimeout(deadline);
  console.log(JSON.stringify(result));
  process.exit(0);
}, (err) => {
  clearTimeout(deadline);
  result.error = String(err && err.message ? err.message : err);
  console.log(JSON.stringify(result));
  process.exit(1);
});
