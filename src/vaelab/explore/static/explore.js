"use strict";
// vaelab explore: one panel per run, drawn on plain canvases (docs/explore.md). The same drawing serves
// `vaelab explore` (server.js: the decoder runs behind a JSON API) and `vaelab export --html` (page.js: the
// decoder runs in the page). Either is a *source*: runs(), codes(id), decode(id, zs, label) -> uint8
// [n, c, h, w], and, where it has them, classify(id, zs) and reconstruct(id, body) (source.can tells).
// A panel shows a plane of the latent space: two chosen dimensions (the others set by sliders) or the
// PCA plane of the test codes. Screen pixels map to plane coordinates (u, v) and those to a full code z.

const PALETTE = [[68, 119, 170], [238, 102, 119], [34, 136, 51], [204, 187, 68], [102, 204, 238],
                 [170, 51, 119], [120, 120, 120], [238, 136, 102], [51, 34, 136], [17, 119, 51]];
const HOLE = [40, 40, 40];  // overlay colour of a hole: a point whose decode is unlike every reconstruction
const STRIP_STEPS = 10;       // images in the interpolation strip, both pins included
const OVERLAY_GRID = 24;      // overlay cells per side: 576 decodes + classifications per view
const SIZE = 460;             // scatter side in CSS pixels
const SAMPLE_COLUMNS = 10;    // prior samples are shown in rows of 10
let limits, source;

const colour = (label, alpha = 1) =>  // label -1: unlabelled data, grey
  `rgba(${label < 0 ? "128,128,128" : PALETTE[label % PALETTE.length]},${alpha})`;
const showError = message => { document.getElementById("error").textContent = message; };

// Run `task` for the newest argument only, one call at a time: a fast mouse never queues stale requests.
function latestOnly(task, onBusy = () => {}) {
  let next = null, busy = false;
  const pump = async () => {
    if (busy) return;
    if (next === null) { onBusy(false); return; }
    const arg = next;
    next = null;
    busy = true;
    onBusy(true);
    try { await task(arg); } catch (error) { showError(error.message); }
    busy = false;
    pump();
  };
  return arg => { next = arg; pump(); };
}

// Raw uint8 images [n, c, h, w] on a canvas, `columns` to a row (default: all in one row).
function paint(canvas, bytes, n, [c, h, w], columns = n) {
  const rows = Math.ceil(n / columns);
  canvas.width = columns * w;
  canvas.height = rows * h;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(columns * w, rows * h), plane = h * w;
  for (let i = 0; i < n; i++) {
    const left = (i % columns) * w, top = Math.floor(i / columns) * h;
    for (let p = 0; p < plane; p++) {
      const src = i * c * plane + p, dst = 4 * ((top + Math.floor(p / w)) * columns * w + left + (p % w));
      for (let k = 0; k < 3; k++) image.data[dst + k] = bytes[src + (c === 1 ? 0 : k * plane)];
      image.data[dst + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
}

const dot = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0);
const fmt = z => z.map(x => x.toFixed(2)).join(", ");

class Panel {
  constructor(run) {
    this.run = run;
    this.el = document.getElementById("panel-template").content.firstElementChild.cloneNode(true);
    this.el.dataset.run = run.id;
    this.q = selector => this.el.querySelector(selector);
    this.scatter = this.q(".scatter");
    this.ctx = this.scatter.getContext("2d");
    this.pins = [];
    this.encoded = null;   // code of the picked or dropped image
    this.overlay = null;   // {rect: [u0, v0, u1, v1], canvas}: holes and the classifier's guesses
    this.cursor = null;    // last hovered screen position, re-decoded when a slider moves
    this.pointer = null;   // the code a linked panel's cursor points at, drawn as a cross here
    this.linked = [];      // panels whose pointers follow this one's (same 2-D latent coordinates)
    this.marks = null;     // codes of the prior samples shown, drawn on the scatter
    this.q(".name").textContent = run.name;
    this.q(".about").textContent =
      `${run.model} · ${run.arch} · ${run.latent_dim}-D latent · ${run.dataset} (${run.n_test} test images)`;
    this.decode = latestOnly(z => this.showDecoded(z), busy => { this.el.dataset.decoding = busy ? "1" : "0"; });
    this.strip = latestOnly(pins => this.showStrip(pins));
    this.shade = latestOnly(grid => this.showOverlay(grid));
    document.getElementById("panels").append(this.el);
  }

  async load() {
    const data = await source.codes(this.run.id);
    this.codes = data.codes;
    this.labels = data.labels;
    this.classes = data.classes;
    this.pca = data.pca;
    this.low = data.low;
    this.high = data.high;
    this.prior = data.prior;
    this.values = [...data.pca.mean];  // the code the sliders edit: starts at the codes' mean
    this.order = [...this.labels.keys()].sort((a, b) => this.labels[a] - this.labels[b]);
    this.buildControls();
    this.bindPointer();
    this.setAxes();
  }

  buildControls() {
    const d = this.run.latent_dim, [mode, dimX, dimY] = [".mode", ".dim-x", ".dim-y"].map(this.q);
    this.q(".axes").hidden = d === 2;
    for (const select of [dimX, dimY]) {
      for (let k = 0; k < d; k++) select.add(new Option(`z${k}`, k));
    }
    dimY.value = 1;
    this.dims = [0, 1];
    for (const [select, which] of [[dimX, 0], [dimY, 1]]) {
      select.addEventListener("change", () => {
        const other = 1 - which, chosen = Number(select.value);
        if (chosen === this.dims[other]) {  // the same dimension on both axes: swap them
          this.dims[other] = this.dims[which];
          (other ? dimY : dimX).value = this.dims[other];
        }
        this.dims[which] = chosen;
        this.setAxes();
      });
    }
    mode.addEventListener("change", () => this.setAxes());
    const overlay = this.q(".overlay");
    this.q(".overlay-toggle").hidden = !source.can.classify;
    overlay.disabled = !this.run.classifier;
    this.q(".overlay-toggle").title = this.run.classifier_reason ||
      "shade the holes (flaw 1): points whose decoded image is unlike all of the model's reconstructions of " +
      "test images, judged in the reference classifier's features; elsewhere, the classifier's guess";
    overlay.addEventListener("change", () => { this.overlay = null; this.requestOverlay(); this.draw(); });
    this.q(".unpin").addEventListener("click", () => { this.pins = []; this.showPins(); });
    this.q(".show-samples").addEventListener("click", () => this.showSamples());
    this.q(".show-grid").addEventListener("click", () => this.showGrid());
    this.q(".prior-about").textContent = `samples and grid ${this.prior.description}; ` +
      `the grid is ${this.prior.grid_description}`;
    this.label = null;  // a conditional run's chosen class: the cursor's image and the pinned strip decode with it
    const condition = this.q(".condition"), labelSelect = this.q(".label");
    condition.hidden = !this.run.conditional;
    this.classes.forEach((name, i) => labelSelect.add(new Option(name, i)));
    labelSelect.addEventListener("change", () => {
      this.label = labelSelect.value === "" ? null : Number(labelSelect.value);
      if (this.cursor) this.decode(this.lift(...this.toPlane(...this.cursor)));
      if (this.pins.length === 2) this.strip(this.pins);
      if (!this.q(".samples").hidden) this.showSamples();
      if (!this.q(".grid").hidden) this.showGrid();
    });
    this.q(".legend").innerHTML = this.classes.map((name, i) => `<span><i style="background:${colour(i)}">` +
      `</i>${name}</span>`).join("") +
      (this.run.classifier ? " <span>overlay: dark = hole, class colour = the classifier's guess</span>" : "");
  }

  // The plane shown: (u, v) are either two code dimensions or the two leading PCA directions.
  project(z) {
    if (this.mode === "pca") {
      const centred = z.map((x, i) => x - this.pca.mean[i]);
      return [dot(centred, this.pca.axes[0]), dot(centred, this.pca.axes[1])];
    }
    return [z[this.dims[0]], z[this.dims[1]]];
  }

  lift(u, v) {
    let z;
    if (this.mode === "pca") {
      z = this.pca.mean.map((m, i) => m + u * this.pca.axes[0][i] + v * this.pca.axes[1][i]);
    } else {
      z = [...this.values];
      z[this.dims[0]] = u;
      z[this.dims[1]] = v;
    }
    return z.map(x => Math.max(-limits.latent_bound, Math.min(limits.latent_bound, x)));
  }

  toScreen([u, v]) { return [SIZE / 2 + (u - this.view.u) * this.view.scale, SIZE / 2 - (v - this.view.v) * this.view.scale]; }
  toPlane(x, y) { return [this.view.u + (x - SIZE / 2) / this.view.scale, this.view.v - (y - SIZE / 2) / this.view.scale]; }

  setAxes() {
    this.mode = this.run.latent_dim === 2 ? "dims" : this.q(".mode").value;
    this.q(".dim-x").disabled = this.q(".dim-y").disabled = this.mode === "pca";
    this.projected = this.codes.map(z => this.project(z));
    const us = this.projected.map(p => p[0]), vs = this.projected.map(p => p[1]);
    const [u0, u1, v0, v1] = [Math.min(...us), Math.max(...us), Math.min(...vs), Math.max(...vs)];
    this.view = {u: (u0 + u1) / 2, v: (v0 + v1) / 2, scale: 0.9 * SIZE / Math.max(u1 - u0, v1 - v0, 1e-6)};
    this.buildSliders();
    this.overlay = null;
    this.requestOverlay();
    this.draw();
  }

  buildSliders() {
    const box = this.q(".sliders");
    box.replaceChildren();
    if (this.mode === "pca" || this.run.latent_dim === 2) return;
    for (let k = 0; k < this.run.latent_dim; k++) {
      if (this.dims.includes(k)) continue;
      const label = document.createElement("label"), slider = document.createElement("input");
      Object.assign(slider, {type: "range", min: this.low[k], max: this.high[k],
                             step: (this.high[k] - this.low[k]) / 200 || 0.01, value: this.values[k]});
      slider.dataset.dim = k;
      slider.addEventListener("input", () => {
        this.values[k] = Number(slider.value);
        this.overlay = null;
        this.requestOverlay();
        if (this.cursor) this.decode(this.lift(...this.toPlane(...this.cursor)));
        this.draw();
      });
      label.append(`z${k}`, slider);
      box.append(label);
    }
  }

  bindPointer() {
    const canvas = this.scatter;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = canvas.height = SIZE * dpr;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    let drag = null;
    canvas.addEventListener("pointerdown", e => {
      drag = {x: e.offsetX, y: e.offsetY, u: this.view.u, v: this.view.v, moved: false};
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", e => {
      if (drag) {
        const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
        drag.moved ||= Math.hypot(dx, dy) > 3;
        if (!drag.moved) return;
        this.view.u = drag.u - dx / this.view.scale;
        this.view.v = drag.v + dy / this.view.scale;
        this.requestOverlay();
        this.draw();
        return;
      }
      this.cursor = [e.offsetX, e.offsetY];
      this.pointer = null;
      const z = this.lift(...this.toPlane(e.offsetX, e.offsetY));
      this.decode(z);
      if (linking()) for (const other of this.linked) other.follow(z);
    });
    canvas.addEventListener("pointerup", e => {
      if (drag && !drag.moved) this.pin(this.lift(...this.toPlane(e.offsetX, e.offsetY)));
      drag = null;
    });
    canvas.addEventListener("wheel", e => {
      e.preventDefault();
      const [u, v] = this.toPlane(e.offsetX, e.offsetY), factor = Math.exp(-e.deltaY * 0.0015);
      this.view.scale *= factor;
      this.view.u = u - (u - this.view.u) / factor;  // keep the point under the cursor in place
      this.view.v = v - (v - this.view.v) / factor;
      this.requestOverlay();
      this.draw();
    }, {passive: false});
  }

  // Another panel's cursor is at code z: mark it here and decode it with this panel's decoder.
  follow(z) {
    this.pointer = z;
    this.decode(z);
    this.draw();
  }

  draw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      const ctx = this.ctx;
      ctx.clearRect(0, 0, SIZE, SIZE);
      if (this.overlay && this.q(".overlay").checked) {
        const [u0, v0, u1, v1] = this.overlay.rect, [x0, y0] = this.toScreen([u0, v1]), [x1, y1] = this.toScreen([u1, v0]);
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(this.overlay.canvas, x0, y0, x1 - x0, y1 - y0);
      }
      let label = -1;
      for (const i of this.order) {  // sorted by label: one fillStyle change per class
        if (this.labels[i] !== label) { label = this.labels[i]; ctx.fillStyle = colour(label, 0.75); }
        const [x, y] = this.toScreen(this.projected[i]);
        if (x > -2 && y > -2 && x < SIZE + 2 && y < SIZE + 2) ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
      }
      if (this.marks) {
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 1.5;
        for (const z of this.marks) {
          const [x, y] = this.toScreen(this.project(z));
          ctx.beginPath(); ctx.moveTo(x - 4, y - 4); ctx.lineTo(x + 4, y + 4);
          ctx.moveTo(x - 4, y + 4); ctx.lineTo(x + 4, y - 4); ctx.stroke();
        }
      }
      if (this.pointer && linking()) {
        const [x, y] = this.toScreen(this.project(this.pointer));
        ctx.strokeStyle = "#d00";
        ctx.lineWidth = 1.5;
        ctx.beginPath(); ctx.moveTo(x - 10, y); ctx.lineTo(x + 10, y); ctx.moveTo(x, y - 10); ctx.lineTo(x, y + 10);
        ctx.stroke();
      }
      const marks = this.pins.map(z => this.toScreen(this.project(z)));
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5;
      if (marks.length === 2) {
        ctx.beginPath(); ctx.moveTo(...marks[0]); ctx.lineTo(...marks[1]); ctx.stroke();
      }
      for (const [x, y] of marks) {
        ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill(); ctx.stroke();
      }
      if (this.encoded) {
        const [x, y] = this.toScreen(this.project(this.encoded));
        ctx.lineWidth = 3;
        ctx.strokeStyle = "#d00";
        ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.stroke();
      }
    });
  }

  async showDecoded(z) {
    const overlay = this.q(".overlay").checked;
    const [bytes, guess] = await Promise.all([
      source.decode(this.run.id, [z], this.label),
      overlay ? source.classify(this.run.id, [z]) : null]);
    const canvas = this.q(".decoded");
    paint(canvas, bytes, 1, this.run.image_shape);
    canvas.dataset.z = JSON.stringify(z);
    this.q(".readout").textContent = `z = (${fmt(z)})`;
    this.q(".guess").textContent = guess ?
      `classifier: ${this.classes[guess.labels[0]]} (${Math.round(100 * guess.confidence[0])}% sure); ` +
      (guess.hole[0] ? "a hole: unlike every reconstruction" : "like its reconstructions") : "";
  }

  pin(z) {
    this.pins = [...this.pins, z].slice(-2);
    this.showPins();
  }

  showPins() {
    this.el.dataset.pins = this.pins.length;
    this.q(".strip").hidden = this.pins.length < 2;
    if (this.pins.length === 2) this.strip(this.pins);
    this.draw();
  }

  async showStrip([a, b]) {
    const zs = Array.from({length: STRIP_STEPS}, (_, s) => {
      const t = s / (STRIP_STEPS - 1);
      return a.map((x, i) => (1 - t) * x + t * b[i]);  // exactly a and b at the ends
    });
    const bytes = await source.decode(this.run.id, zs, this.label);
    const canvas = this.q(".strip");
    paint(canvas, bytes, STRIP_STEPS, this.run.image_shape);
    canvas.dataset.z = JSON.stringify(zs);
  }

  // Images decoded from random codes of the model's prior (flaw 1: are they digits?), marked on the scatter.
  async showSamples() {
    const zs = this.prior.samples, canvas = this.q(".samples");
    paint(canvas, await source.decode(this.run.id, zs, this.label), zs.length, this.run.image_shape, SAMPLE_COLUMNS);
    canvas.hidden = false;
    canvas.dataset.z = JSON.stringify(zs);
    this.marks = zs;
    this.draw();
  }

  // The decoded latent grid: the report's figure, codes at evenly spaced quantiles of the prior.
  async showGrid() {
    const zs = this.prior.grid, canvas = this.q(".grid"), button = this.q(".show-grid");
    button.disabled = true;
    try {
      paint(canvas, await source.decode(this.run.id, zs, this.label), zs.length, this.run.image_shape,
            this.prior.grid_side);
    } finally {
      button.disabled = false;
    }
    canvas.hidden = false;
    canvas.dataset.z = JSON.stringify(zs);
  }

  // Find the holes on a grid over the visible plane, after the view settles.
  requestOverlay() {
    clearTimeout(this.overlayTimer);
    if (!this.q(".overlay").checked) return;
    this.overlayTimer = setTimeout(() => {
      const [u0, v1] = this.toPlane(0, 0), [u1, v0] = this.toPlane(SIZE, SIZE), n = OVERLAY_GRID, zs = [];
      for (let row = 0; row < n; row++) {
        for (let col = 0; col < n; col++) {
          zs.push(this.lift(u0 + (col + 0.5) * (u1 - u0) / n, v1 - (row + 0.5) * (v1 - v0) / n));
        }
      }
      this.shade({rect: [u0, v0, u1, v1], zs});
    }, 150);
  }

  async showOverlay({rect, zs}) {
    const {labels, hole} = await source.classify(this.run.id, zs);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = OVERLAY_GRID;
    const ctx = canvas.getContext("2d"), image = ctx.createImageData(OVERLAY_GRID, OVERLAY_GRID);
    labels.forEach((label, i) => {
      const rgb = hole[i] ? HOLE : PALETTE[label % PALETTE.length];
      for (let k = 0; k < 3; k++) image.data[4 * i + k] = rgb[k];
      image.data[4 * i + 3] = hole[i] ? 150 : 70;
    });
    ctx.putImageData(image, 0, 0);
    this.overlay = {rect, canvas};
    this.draw();
  }

  async reconstruct(body) {
    const result = await source.reconstruct(this.run.id, body);
    this.encoded = result.code;
    this.q(".encoded").hidden = false;
    this.q(".input").src = result.input;
    this.q(".reconstruction").src = result.reconstruction;
    this.q(".encoded figcaption").textContent = result.label === null ? "input" : `input (${this.classes[result.label]})`;
    this.draw();
  }
}

// A dropped or chosen image file at a run's image shape: grey levels (light ink on dark, like the digit datasets)
// for a grey model, the file's own colours for an RGB one.
async function imagePixels(file, [c, h, w]) {
  const bitmap = await createImageBitmap(file), canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data, plane = h * w, values = new Array(c * plane);
  for (let p = 0; p < plane; p++) {
    for (let k = 0; k < c; k++) {
      values[k * plane + p] = (c === 1 ? (rgba[4 * p] + rgba[4 * p + 1] + rgba[4 * p + 2]) / 3 : rgba[4 * p + k]) / 255;
    }
  }
  const border = [];
  for (let p = 0; p < plane; p++) {
    const y = Math.floor(p / w), x = p % w;
    if (x === 0 || y === 0 || x === w - 1 || y === h - 1) border.push(values[p]);
  }
  const paper = c === 1 && border.reduce((a, b) => a + b, 0) / border.length > 0.5;  // dark ink on light paper
  return paper ? values.map(v => 1 - v) : values;
}

// Pointers are linked across panels when every panel shows the same two code dimensions (all 2-D latents).
const linking = () => document.getElementById("link").checked;

// Draw one panel per run of `from` (a source, see the top of this file).
async function start(from) {
  source = from;
  const {runs, limits: given} = await source.runs();
  limits = given;
  const panels = runs.map(run => new Panel(run));
  await Promise.all(panels.map(panel => panel.load()));
  const linkable = panels.length > 1 && runs.every(run => run.latent_dim === 2);
  document.getElementById("link-toggle").hidden = !linkable;
  document.getElementById("link").checked = linkable;
  for (const panel of panels) panel.linked = panels.filter(other => other !== panel);
  document.getElementById("link").addEventListener("change", () => panels.forEach(panel => panel.draw()));
  document.querySelector(".pick").hidden = document.querySelector(".encode-help").hidden = !source.can.encode;
  if (source.can.encode) bindImagePicking(panels, runs);
  document.body.dataset.ready = "1";
}

function bindImagePicking(panels, runs) {
  const everyPanel = async make => {
    showError("");
    await Promise.all(panels.map(async panel => panel.reconstruct(await make(panel))))
      .catch(error => showError(error.message));
  };
  const index = document.getElementById("test-index");
  index.max = Math.min(...runs.map(run => run.n_test)) - 1;
  document.getElementById("pick").addEventListener("click", () => everyPanel(() => ({index: Number(index.value)})));
  document.getElementById("random").addEventListener("click", () => {
    index.value = Math.floor(Math.random() * (Number(index.max) + 1));
    everyPanel(() => ({index: Number(index.value)}));
  });
  const useFile = file => everyPanel(async panel => ({pixels: await imagePixels(file, panel.run.image_shape)}));
  document.getElementById("file").addEventListener("change", e => e.target.files[0] && useFile(e.target.files[0]));
  document.addEventListener("dragover", e => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", e => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    const file = [...e.dataTransfer.files].find(f => f.type.startsWith("image/"));
    if (file) useFile(file); else showError("drop an image file (PNG, JPEG, ...)");
  });
}
