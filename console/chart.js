// A live line chart on a <canvas>, drawn by hand: a few series over the last
// N samples, with the current values in a legend. No library: the console has
// nothing to vendor or to build.

const COLORS = ["#2f6fb3", "#2e9e5b", "#c9472b", "#8a5cc2"];

export class LineChart {
  constructor(canvas, series, points = 60) {
    this.canvas = canvas;
    this.series = series; // [{name, unit}]
    this.points = points;
    this.data = series.map(() => []);
  }

  push(values) {
    values.forEach((v, i) => {
      const d = this.data[i];
      d.push(Number.isFinite(v) ? v : 0);
      if (d.length > this.points) d.shift();
    });
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth || 300;
    const h = c.clientHeight || 150;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 44, right = 8, top = 8, bottom = 18;
    let max = 0;
    for (const d of this.data) for (const v of d) max = Math.max(max, v);
    max = niceMax(max);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#667";
    g.strokeStyle = "#dde";
    g.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const y = top + ((h - top - bottom) * k) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(w - right, y);
      g.stroke();
      g.fillText(short(max - (max * k) / 4), 2, y + 4);
    }
    g.fillText("last " + this.points * 2 + " s", left, h - 4);
    const xs = (i) => left + ((w - left - right) * i) / Math.max(1, this.points - 1);
    const ys = (v) => top + (h - top - bottom) * (1 - v / max);
    this.data.forEach((d, s) => {
      if (!d.length) return;
      g.strokeStyle = COLORS[s % COLORS.length];
      g.lineWidth = 2;
      g.beginPath();
      const off = this.points - d.length;
      d.forEach((v, i) => (i ? g.lineTo(xs(off + i), ys(v)) : g.moveTo(xs(off + i), ys(v))));
      g.stroke();
    });
  }

  color(i) {
    return COLORS[i % COLORS.length];
  }
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function short(v) {
  if (v >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (v >= 100 || v === Math.round(v)) return String(Math.round(v));
  return v.toFixed(1);
}
