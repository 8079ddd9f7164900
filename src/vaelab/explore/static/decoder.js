"use strict";
// decoder.js: a vaelab decoder run in the page, for `vaelab export --html` (page.py writes the program).
// A program is a list of ops over float32 weights; activations are Float64Array (so the only rounding
// that differs from PyTorch is PyTorch's own float32 rounding), images are kept channels-last (HWC) so
// that the innermost loop of a transposed convolution runs over contiguous output channels.

// The weights: base64 of deflated byte planes, the top `bytesPerWeight` bytes of each float32 (docs/export.md).
async function unpackWeights(packed, bytesPerWeight, count) {
  const text = atob(packed), deflated = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) deflated[i] = text.charCodeAt(i);
  const stream = new Blob([deflated]).stream().pipeThrough(new DecompressionStream("deflate"));
  const planes = new Uint8Array(await new Response(stream).arrayBuffer());
  if (planes.length !== bytesPerWeight * count) throw new Error("the page's weights are damaged");
  const bits = new Uint32Array(count);
  for (let b = 0; b < bytesPerWeight; b++) {
    const shift = 24 - 8 * b, plane = planes.subarray(b * count, (b + 1) * count);
    for (let i = 0; i < count; i++) bits[i] |= plane[i] << shift;
  }
  return new Float32Array(bits.buffer);
}

// PyTorch's ConvTranspose2d weight [in, out, kh, kw] as [kh][kw][in][out]: one input pixel and one kernel tap
// then add a contiguous row of outputs.
function tapsFirst(w, cin, cout, kh, kw) {
  const t = new Float32Array(w.length);
  for (let ci = 0; ci < cin; ci++) {
    for (let co = 0; co < cout; co++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) t[((ky * kw + kx) * cin + ci) * cout + co] = w[((ci * cout + co) * kh + ky) * kw + kx];
      }
    }
  }
  return t;
}

// An activation: `data` and, once reshaped to an image, its [c, h, w] (stored HWC); null while a flat vector.
const LAYERS = {
  linear(op, w) {
    const W = w[op.weight], b = w[op.bias], n = op.in, m = op.out;
    return ({data}) => {
      const y = new Float64Array(m);
      for (let o = 0; o < m; o++) {
        let sum = b[o];
        const row = o * n;
        for (let i = 0; i < n; i++) sum += W[row + i] * data[i];
        y[o] = sum;
      }
      return {data: y, shape: null};
    };
  },
  layer_norm(op, w) {
    const g = w[op.weight], b = w[op.bias], n = op.size;
    return ({data}) => {
      let mean = 0, variance = 0;
      for (let i = 0; i < n; i++) mean += data[i];
      mean /= n;
      for (let i = 0; i < n; i++) variance += (data[i] - mean) ** 2;
      const inv = 1 / Math.sqrt(variance / n + op.eps), y = new Float64Array(n);
      for (let i = 0; i < n; i++) y[i] = (data[i] - mean) * inv * g[i] + b[i];
      return {data: y, shape: null};
    };
  },
  // PyTorch's view of a flat vector as [c, h, w] (CHW order), stored HWC.
  reshape(op) {
    const [c, h, w] = op.shape, plane = h * w;
    return ({data}) => {
      const y = new Float64Array(c * plane);
      for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) y[p * c + k] = data[k * plane + p];
      return {data: y, shape: [c, h, w]};
    };
  },
  conv_transpose2d(op, w) {
    const cin = op.in, cout = op.out, [kh, kw] = op.kernel, [sy, sx] = op.stride, [py, px] = op.padding;
    const T = tapsFirst(w[op.weight], cin, cout, kh, kw), b = w[op.bias];
    return ({data, shape: [, h, width]}) => {
      const ho = (h - 1) * sy - 2 * py + kh + op.output_padding[0];
      const wo = (width - 1) * sx - 2 * px + kw + op.output_padding[1];
      const y = new Float64Array(ho * wo * cout);
      for (let p = 0; p < ho * wo; p++) for (let o = 0; o < cout; o++) y[p * cout + o] = b[o];
      for (let iy = 0; iy < h; iy++) {
        for (let ix = 0; ix < width; ix++) {
          const inBase = (iy * width + ix) * cin;
          for (let ky = 0; ky < kh; ky++) {
            const oy = iy * sy - py + ky;
            if (oy < 0 || oy >= ho) continue;
            for (let kx = 0; kx < kw; kx++) {
              const ox = ix * sx - px + kx;
              if (ox < 0 || ox >= wo) continue;
              const outBase = (oy * wo + ox) * cout, tap = (ky * kw + kx) * cin;
              for (let ci = 0; ci < cin; ci++) {
                const a = data[inBase + ci];
                if (a === 0) continue;
                const row = (tap + ci) * cout;
                for (let o = 0; o < cout; o++) y[outBase + o] += a * T[row + o];
              }
            }
          }
        }
      }
      return {data: y, shape: [cout, ho, wo]};
    };
  },
  // eval-mode BatchNorm, folded: x * scale + shift per channel (the last axis of HWC)
  channel_affine(op, w) {
    const scale = w[op.scale], shift = w[op.shift], c = op.channels;
    return ({data, shape}) => ({data: data.map((x, i) => x * scale[i % c] + shift[i % c]), shape});
  },
  relu: () => ({data, shape}) => ({data: data.map(x => (x > 0 ? x : 0)), shape}),
  leaky_relu: op => ({data, shape}) => ({data: data.map(x => (x > 0 ? x : x * op.slope)), shape}),
  sigmoid: () => ({data, shape}) => ({data: data.map(x => 1 / (1 + Math.exp(-x))), shape}),
};

class Decoder {
  // spec: page.py's decoder entry {ops, inputs, image_shape, weights: [[name, shape]], bytes_per_weight, packed}
  static async load(spec) {
    const sizes = spec.weights.map(([, shape]) => shape.reduce((a, b) => a * b, 1));
    const all = await unpackWeights(spec.packed, spec.bytes_per_weight, sizes.reduce((a, b) => a + b, 0));
    const weights = {};
    let offset = 0;
    spec.weights.forEach(([name], i) => { weights[name] = all.subarray(offset, offset += sizes[i]); });
    return new Decoder(spec, weights);
  }

  constructor(spec, weights) {
    this.inputs = spec.inputs;
    this.imageShape = spec.image_shape;
    this.layers = spec.ops.map(op => {
      if (!(op.op in LAYERS)) throw new Error(`the page's decoder has no layer ${op.op}`);
      return LAYERS[op.op](op, weights);
    });
  }

  // One input row (the code, then a one-hot label for a conditional model) -> the image, CHW, in [0, 1].
  decodeOne(input) {
    let x = {data: Float64Array.from(input), shape: null};
    for (const layer of this.layers) x = layer(x);
    const [c, h, w] = this.imageShape, plane = h * w, image = new Float32Array(c * plane);
    if (x.shape === null) { image.set(x.data); return image; }  // a flat vector is already CHW
    for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) image[k * plane + p] = x.data[p * c + k];
    return image;
  }
}
