// Interop run of the `mqtt` npm package (MQTT.js) against a broker.
// Usage: node interop.js <host> <port> <protocolVersion 4|5>
// Prints one JSON object describing what happened; tests/interop/
// test_node_mqtt.py checks it. Exits 0 when the run completed, 1 on an
// error, 2 when its own deadline passed (it never hangs).
'use strict';

const mqtt = require('mqtt');

const [host, port, versionArg] = process.argv.slice(2);
const version = Number(versionArg);
const base = `t/node/v${version}/${process.pid}`;
const result = { version, mqttjs: require('mqtt/package.json').version };

const deadline = setTimeout(() => {
  result.error = 'deadline passed';
  console.log(JSON.stringify(result));
  process.exit(2);
}, 12000);

function client(id, extra) {
  return mqtt.connectAsync(`mqtt://${host}:${port}`, {
    protocolVersion: version,
    clientId: id,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...extra,
  });
}

// Resolve with the next `n` messages seen by `c`.
function nextMessages(c, n) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`got ${got.length}/${n} messages`)), 5000);
    const onMessage = (topic, payload, packet) => {
      got.push({
        topic,
        payload: payload.toString('utf8'),
        qos: packet.qos,
        retain: packet.retain,
        properties: packet.properties || null,
      });
      if (got.length === n) {
        clearTimeout(timer);
        c.removeListener('message', onMessage);
        resolve(got);
      }
    };
    c.on('message', onMessage);
  });
}

async function main() {
  const sub = await client(`node-sub-${version}-${process.pid}`);
  const pub = await client(`node-pub-${version}-${process.pid}`);

  const subOpts = version === 5 ? { qos: 2, properties: { subscriptionIdentifier: 12 } } : { qos: 2 };
  result.granted = (await sub.subscribeAsync(`${base}/data`, subOpts)).map((g) => g.qos);

  const arriving = nextMessages(sub, 3);
  for (const qos of [0, 1, 2]) {
    const opts = { qos };
    if (version === 5) {
      opts.properties = {
        userProperties: { origin: 'node', qos: String(qos) },
        contentType: 'text/plain',
        responseTopic: `${base}/reply`,
        correlationData: Buffer.from([1, 2, qos]),
      };
    }
    await pub.publishAsync(`${base}/data`, `payload-${qos}`, opts);
  }
  result.messages = (await arriving).map((m) => ({
    topic: m.topic.replace(base, 'BASE'),
    payload: m.payload,
    qos: m.qos,
    retain: m.retain,
    userProperties: m.properties && m.properties.userProperties,
    contentType: m.properties && m.properties.contentType,
    responseTopic: m.properties && m.properties.responseTopic && m.properties.responseTopic.replace(base, 'BASE'),
    correlationData: m.properties && m.properties.correlationData && [...m.properties.correlationData],
    subscriptionIdentifier: m.properties && m.properties.subscriptionIdentifier,
  }));

  // Retained: publish, then a fresh client subscribes and gets it flagged.
  await pub.publishAsync(`${base}/retained`, 'kept', { qos: 1, retain: true });
  const late = await client(`node-late-${version}-${process.pid}`);
  const lateMsg = nextMessages(late, 1);
  await late.subscribeAsync(`${base}/retained`, { qos: 1 });
  const [r] = await lateMsg;
  result.retained = { payload: r.payload, retain: r.retain, qos: r.qos };
  // Clear it (empty retained payload) and check a new subscriber gets nothing.
  await pub.publishAsync(`${base}/retained`, '', { qos: 1, retain: true });
  const empty = await client(`node-empty-${version}-${process.pid}`);
  let cleared = true;
  empty.on('message', () => { cleared = false; });
  await empty.subscribeAsync(`${base}/retained`, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 300)); // "nothing arrives" window
  result.retainedCleared = cleared;

  result.unsubscribe = await sub.unsubscribeAsync(`${base}/data`).then(() => 'ok');

  await Promise.all([sub, pub, late, empty].map((c) => c.endAsync()));
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
