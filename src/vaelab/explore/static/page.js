"use strict";
// The source of an exported page (`vaelab export --html`): the runs, their codes and decoder programs are
// inlined as JSON, and decoder.js decodes in the page. No classifier and no encoder travel with it.

const pageData = JSON.parse(document.getElementById("vaelab-page-data").textContent);
const pageRuns = new Map(pageData.runs.map(run => [run.info.id, run]));
const decoders = new Map(pageData.runs.map(run => [run.info.id, Decoder.load(run.decoder).then(decoder => {
  delete run.decoder.packed;  // the megabytes of base64 are no longer needed
  return decoder;
})]));
const YIELD_MS = 30;  // a long decode (the 400-image grid) gives the page back this often

// Decoded images [n, c, h, w] in [0, 1] for codes zs, all of class `label` (null: no label) where the run
// is conditional.
async function decodeFloats(id, zs, label = null) {
  const run = pageRuns.get(id), decoder = await decoders.get(id);
  const d = run.info.latent_dim, size = decoder.imageShape.reduce((a, b) => a * b, 1);
  const images = new Float32Array(zs.length * size), input = new Float64Array(decoder.inputs);
  let since = performance.now();
  for (let i = 0; i < zs.length; i++) {
    input.fill(0);
    input.set(zs[i].slice(0, d));
    if (label !== null && label >= 0 && d + label < decoder.inputs) input[d + label] = 1;
    images.set(decoder.decodeOne(input), i * size);
    if (performance.now() - since > YIELD_MS) {
      await new Promise(resume => setTimeout(resume, 0));
      since = performance.now();
    }
  }
  return images;
}

// As the server rounds to uint8 (to_uint8 in served.py): round(255 v), clamped.
const toBytes = images => Uint8Array.from(images, v => Math.min(255, Math.max(0, Math.round(v * 255))));

const pageSource = {
  can: {classify: false, encode: false},
  runs: async () => ({runs: pageData.runs.map(run => run.info), limits: pageData.limits}),
  codes: async id => pageRuns.get(id).view,
  decode: async (id, zs, label = null) => toBytes(await decodeFloats(id, zs, label)),
};

// For tests and benchmarks: the float images of the index-th run's decoder.
window.vaelabPage = {decode: (index, zs, label = null) => decodeFloats(pageData.runs[index].info.id, zs, label)};

start(pageSource).catch(error => showError(error.message));
