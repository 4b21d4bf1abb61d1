// MQTT.js over WebSocket (ws:// or wss://) against a broker.
// Usage: node ws.js <url> <protocolVersion 4|5> [cafile]
// Prints one JSON object; tests/interop/test_ws_clients.py checks it.
// Exits 0 when the run completed, 1 on an error, 2 at its own deadline.
'use strict';

const fs = require('fs');
const mqtt = require('mqtt');

const [url, versionArg, cafile] = process.argv.slice(2);
const version = Number(versionArg);
const base = `t/ws/v${version}/${process.pid}`;
const result = { version, url };
const tls = cafile ? { ca: fs.readFileSync(cafile), rejectUnauthorized: true } : {};

const deadline = setTimeout(() => {
  result.error = 'deadline passed';
  console.log(JSON.stringify(result));
  process.exit(2);
}, 15000);

function client(id, extra) {
  return mqtt.connectAsync(url, {
    protocolVersion: version, clientId: id, clean: true, reconnectPeriod: 0,
    connectTimeout: 5000, ...tls, ...extra,
  });
}

function nextMessages(c, n) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`got ${got.length}/${n} messages`)), 5000);
    const on = (topic, payload, packet) => {
      got.push({ topic, payload: payload.toString('utf8'), qos: packet.qos, retain: packet.retain,
                 properties: packet.properties || null });
      if (got.length === n) { clearTimeout(timer); c.removeListener('message', on); resolve(got); }
    };
    c.on('message', on);
  });
}

async function main() {
  const sub = await client(`ws-sub-${version}-${process.pid}`);
  const pub = await client(`ws-pub-${version}-${process.pid}`);
  await sub.subscribeAsync(`${base}/data`, { qos: 2 });
  const three = nextMessages(sub, 3);
  const props = version === 5 ? { properties: { userProperties: { k: 'v' }, messageExpiryInterval: 60 } } : {};
  await pub.publishAsync(`${base}/data`, 'q0', { qos: 0, ...props });
  await pub.publishAsync(`${base}/data`, 'q1', { qos: 1, ...props });
  await pub.publishAsync(`${base}/data`, 'q2', { qos: 2, ...props });
  result.messages = (await three).sort((a, b) => a.qos - b.qos);

  // Retained: a later subscriber gets it.
  await pub.publishAsync(`${base}/retained`, 'kept', { qos: 1, retain: true });
  const late = await client(`ws-late-${version}-${process.pid}`);
  const one = nextMessages(late, 1);
  await late.subscribeAsync(`${base}/retained`, { qos: 1 });
  result.retained = (await one)[0];
  await pub.publishAsync(`${base}/retained`, '', { qos: 1, retain: true });

  // Will: published when the WebSocket client's socket is destroyed.
  const willWatch = nextMessages(sub, 1);
  await sub.subscribeAsync(`${base}/will`, { qos: 1 });
  const dying = await client(`ws-dying-${version}-${process.pid}`,
                             { will: { topic: `${base}/will`, payload: 'gone', qos: 1, retain: false } });
  dying.stream.destroy();
  result.will = (await willWatch)[0];

  await Promise.all([sub.endAsync(), pub.endAsync(), late.endAsync()]);
  result.ok = true;
}

main().then(() => {
  clearTimeout(deadline);
  console.log(JSON.stringify(result));
  process.exit(0);
}, (err) => {
  clearTimeout(deadline);
  result.error = String(err && err.stack || err);
  console.log(JSON.stringify(result));
  process.exit(1);
});
