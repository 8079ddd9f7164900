"use strict";
// The source of `vaelab explore`: the served runs' JSON API (docs/explore.md), where PyTorch decodes.

async function api(path, body, binary = false) {
  const init = body === undefined ? {} :
    {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  if (!response.ok) {
    const detail = await response.json().then(j => j.detail, () => response.statusText);
    throw new Error(`${path}: ${detail}`);
  }
  return binary ? new Uint8Array(await response.arrayBuffer()) : response.json();
}

const runPath = id => `/api/runs/${encodeURIComponent(id)}`;

const serverSource = {
  can: {classify: true, encode: true},
  runs: () => api("/api/runs"),
  codes: id => api(`${runPath(id)}/codes`),
  decode: (id, zs, label = null) =>
    api(`${runPath(id)}/decode`, label === null ? {z: zs, format: "raw"} : {z: zs, format: "raw", label}, true),
  classify: (id, zs) => api(`${runPath(id)}/classify`, {z: zs}),
  reconstruct: (id, body) => api(`${runPath(id)}/reconstruct`, body),
};

start(serverSource).catch(error => showError(error.message));
