// A tiny MQTT 3.1.1 client over WebSocket (subprotocol "mqtt") for the topic
// tester: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0 both ways,
// PINGREQ/PINGRESP, DISCONNECT. Packets as in the OASIS MQTT 3.1.1 standard,
// section 3; nothing else (no QoS 1/2, no session state).

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

function str(s) {
  const b = enc.encode(s);
  if (b.length > 65535) throw new Error("string longer than 65535 bytes");
  return [b.length >> 8, b.length & 255, ...b];
}

// Remaining Length (MQTT-2.2.3): 7 bits a byte, at most 4 bytes.
function remaining(n) {
  const out = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 128;
    out.push(d);
  } while (n > 0);
  if (out.length > 4) throw new Error("packet too large");
  return out;
}

function packet(first, body) {
  return new Uint8Array([first, ...remaining(body.length), ...body]);
}

export const CONNACK_REASONS = {
  1: "unacceptable protocol version",
  2: "client id rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized",
};

export class MqttWs {
  // url: ws://host:port/mqtt; opts: {clientId, username, password, keepalive}
  // events: onconnect(), onmessage(topic, payloadBytes, retain), onclose(reason)
  constructor(url, opts = {}) {
    this.url = url;
    this.opts = opts;
    this.buf = new Uint8Array(0);
    this.nextId = 1;
    this.pending = new Map(); // packet id -> resolve of a SUBACK
    this.onconnect = () => {};
    this.onmessage = () => {};
    this.onclose = () => {};
  }

  connect() {
    const ws = new WebSocket(this.url, "mqtt");
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => ws.send(this.connectPacket());
    ws.onmessage = (ev) => this.input(new Uint8Array(ev.data));
    ws.onerror = () => {};
    ws.onclose = (ev) => this.closed(this.reason || "WebSocket closed (code " + ev.code + ")");
  }

  connectPacket() {
    const o = this.opts;
    const keepalive = o.keepalive ?? 30;
    let flags = 0x02; // clean session
    const payload = [...str(o.clientId || "")];
    if (o.username) {
      flags |= 0x80;
      payload.push(...str(o.username));
      if (o.password) {
        flags |= 0x40;
        payload.push(...str(o.password));
      }
    }
    const vh = [...str("MQTT"), 4, flags, keepalive >> 8, keepalive & 255];
    this.keepalive = keepalive;
    return packet(0x10, [...vh, ...payload]);
  }

  subscribe(filter, qos = 0) {
    const id = this.id();
    this.send(packet(0x82, [id >> 8, id & 255, ...str(filter), qos]));
    return new Promise((resolve) => this.pending.set(id, resolve));
  }

  publish(topic, payload, retain = false) {
    const body = typeof payload === "string" ? enc.encode(payload) : payload;
    this.send(packet(0x30 | (retain ? 1 : 0), [...str(topic), ...body]));
  }

  disconnect() {
    this.reason = "disconnected";
    try {
      this.send(new Uint8Array([0xe0, 0]));
    } catch (e) {
      /* already closed */
    }
    if (this.ws) this.ws.close();
  }

  id() {
    const id = this.nextId;
    this.nextId = id === 65535 ? 1 : id + 1;
    return id;
  }

  send(bytes) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
    this.ws.send(bytes);
  }

  closed(reason) {
    clearInterval(this.ping);
    this.ping = null;
    if (this.done) return;
    this.done = true;
    this.onclose(reason);
  }

  fail(reason) {
    this.reason = reason;
    if (this.ws) this.ws.close();
  }

  input(bytes) {
    const all = new Uint8Array(this.buf.length + bytes.length);
    all.set(this.buf);
    all.set(bytes, this.buf.length);
    let p = 0;
    for (;;) {
      // fixed header: type byte, then Remaining Length
      if (all.length - p < 2) break;
      let len = 0, mul = 1, i = p + 1, complete = false;
      for (let k = 0; k < 4 && i < all.length; k++, i++) {
        len += (all[i] & 127) * mul;
        mul *= 128;
        if (!(all[i] & 128)) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete) {
        if (i - p > 4) return this.fail("malformed Remaining Length from the broker");
        break;
      }
      if (all.length - i < len) break;
      this.handle(all[p], all.subarray(i, i + len));
      p = i + len;
    }
    this.buf = all.slice(p);
  }

  handle(first, body) {
    const type = first >> 4;
    if (type === 2) {
      // CONNACK: flags, return code
      const rc = body[1];
      if (rc !== 0) return this.fail("CONNACK refused: " + (CONNACK_REASONS[rc] || "code " + rc));
      if (this.keepalive > 0)
        this.ping = setInterval(() => {
          try {
            this.send(new Uint8Array([0xc0, 0]));
          } catch (e) {
            /* closing */
          }
        }, (this.keepalive * 1000) / 2);
      this.onconnect();
    } else if (type === 3) {
      const qos = (first >> 1) & 3;
      const tlen = (body[0] << 8) | body[1];
      const topic = dec.decode(body.subarray(2, 2 + tlen));
      let p = 2 + tlen;
      if (qos > 0) p += 2; // we subscribe at QoS 0, but a broker may not downgrade
      this.onmessage(topic, body.subarray(p), !!(first & 1));
    } else if (type === 9) {
      const id = (body[0] << 8) | body[1];
      const resolve = this.pending.get(id);
      this.pending.delete(id);
      if (resolve) resolve(Array.from(body.subarray(2)));
    } else if (type === 13) {
      // PINGRESP
    }
  }
}

export function payloadText(bytes) {
  return dec.decode(bytes);
}
