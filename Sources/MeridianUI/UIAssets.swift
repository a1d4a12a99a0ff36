/// The UI's page, script and style, compiled into the binary so `meridian ui` serves them itself
/// and the page loads nothing from anywhere else.
enum UIAssets {
    static let indexHTML = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>Meridian: service map and flows</title>
    <link rel="stylesheet" href="/app.css">
    </head>
    <body>
    <header><h1>Meridian</h1><span id="status">loading…</span></header>
    <section>
    <h2>Service map</h2>
    <p class="legend"><span class="key forwarded"></span>forwarded <span class="key dropped"></span>dropped
    <span class="key cross"></span>across clusters <span class="key backend"></span>service → backend</p>
    <svg id="map" xmlns="http://www.w3.org/2000/svg" width="1200" height="520"></svg>
    </section>
    <section>
    <h2>Flows</h2>
    <form id="filters">
    <input name="pod" placeholder="pod [ns/]name">
    <input name="from-pod" placeholder="from pod [ns/]name">
    <input name="to-pod" placeholder="to pod [ns/]name">
    <input name="namespace" placeholder="namespace">
    <input name="from-cluster" placeholder="from cluster">
    <input name="to-cluster" placeholder="to cluster">
    <select name="verdict"><option value="">any verdict</option><option>FORWARDED</option><option>DROPPED</option></select>
    <select name="protocol"><option value="">any protocol</option><option>tcp</option><option>udp</option><option>sctp</option><option>icmp</option></select>
    <input name="port" placeholder="port" size="6">
    <input name="label" placeholder="label key[=value]">
    <select name="type"><option value="">any type</option><option>drop</option><option>trace</option><option>policy-verdict</option></select>
    </form>
    <table id="flows"><thead><tr><th>time</th><th>source</th><th>destination</th><th>service</th><th>verdict</th><th>L4</th><th>node</th></tr></thead><tbody></tbody></table>
    </section>
    <script src="/app.js"></script>
    </body>
    </html>
    """#

    static let appCSS = #"""
    body { font: 13px system-ui, sans-serif; margin: 0 16px; color: #1d2330; }
    header { display: flex; align-items: baseline; gap: 16px; }
    h1 { font-size: 20px; } h2 { font-size: 15px; margin: 12px 0 4px; }
    #status { color: #667; }
    svg { border: 1px solid #d8dbe3; background: #fbfcfe; }
    .cluster rect.frame { fill: #f1f4fa; stroke: #9aa5bd; }
    .cluster text.title { font-weight: 600; font-size: 14px; }
    .service rect { fill: #e4ecff; stroke: #4064c8; }
    .pod circle { fill: #fff; stroke: #51607d; }
    text { font-size: 11px; }
    line.backend { stroke: #8ea3db; stroke-dasharray: 2 3; }
    line.flow { stroke-opacity: .8; }
    line.flow.forwarded { stroke: #1f9d55; }
    line.flow.dropped { stroke: #d64545; }
    line.flow.cross-cluster { stroke-dasharray: 8 4; }
    .legend .key { display: inline-block; width: 18px; height: 3px; margin: 0 4px 3px 12px; vertical-align: middle; }
    .key.forwarded { background: #1f9d55; } .key.dropped { background: #d64545; }
    .key.cross { border-top: 3px dashed #444; height: 0; } .key.backend { border-top: 2px dotted #8ea3db; height: 0; }
    form input, form select { margin: 0 4px 6px 0; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eceef3; white-space: nowrap; }
    tr.DROPPED td.verdict { color: #d64545; font-weight: 600; } tr.FORWARDED td.verdict { color: #1f9d55; }
    """#

    static let appJS = #"""
    "use strict";
    const svgNS = "http://www.w3.org/2000/svg";
    const state = { map: { clusters: [] }, flows: [] };

    function el(name, attrs, text) {
      const node = document.createElementNS(svgNS, name);
      for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
      if (text !== undefined) node.textContent = text;
      return node;
    }

    function side(endpoint, ip, port) {
      const where = endpoint && endpoint.pod_name
        ? [endpoint.cluster_name, endpoint.namespace, endpoint.pod_name].filter(Boolean).join("/")
        : ip + (endpoint && endpoint.labels && endpoint.labels.length ? " " + endpoint.labels.join(",") : "");
      return port ? where + ":" + port : where;
    }

    function podKey(cluster, namespace, name) { return cluster + "/" + namespace + "/" + name; }

    function drawMap() {
      const svg = document.getElementById("map");
      svg.replaceChildren();
      const clusters = state.map.clusters || [];
      if (!clusters.length) return;
      const width = 1200, height = 520, gap = 24;
      const columnWidth = (width - gap * (clusters.length + 1)) / clusters.length;
      const positions = new Map();
      const byIP = new Map();
      const flowLayer = el("g", { id: "flow-layer" });
      clusters.forEach((cluster, index) => {
        const x = gap + index * (columnWidth + gap), y = 16;
        const group = el("g", { class: "cluster", "data-cluster": cluster.name });
        group.appendChild(el("rect", { class: "frame", x, y, width: columnWidth, height: height - 32, rx: 8 }));
        group.appendChild(el("text", { class: "title", x: x + 10, y: y + 20 }, cluster.name + (cluster.error ? " (unreadable: " + cluster.error + ")" : "")));
        (cluster.services || []).forEach((service, i) => {
          const sx = x + 12 + (i % 3) * (columnWidth - 24) / 3, sy = y + 36 + Math.floor(i / 3) * 34;
          const node = el("g", { class: "service", "data-service": service.namespace + "/" + service.name, "data-cluster": cluster.name });
          node.appendChild(el("rect", { x: sx, y: sy, width: (columnWidth - 24) / 3 - 8, height: 26, rx: 5 }));
          node.appendChild(el("text", { x: sx + 6, y: sy + 17 }, service.namespace + "/" + service.name + (service.global ? " (global)" : "")));
          group.appendChild(node);
          positions.set("svc:" + cluster.name + "/" + service.namespace + "/" + service.name, { x: sx + 40, y: sy + 26, service, cluster: cluster.name });
        });
        const pods = cluster.pods || [];
        const top = y + 50 + Math.ceil((cluster.services || []).length / 3) * 34 + 30;
        const perRow = Math.max(1, Math.floor((columnWidth - 20) / 110));
        pods.forEach((pod, i) => {
          const px = x + 60 + (i % perRow) * 110, py = top + Math.floor(i / perRow) * 70;
          const key = podKey(cluster.name, pod.namespace, pod.name);
          const node = el("g", { class: "pod", "data-pod": key, "data-cluster": cluster.name, "data-ip": pod.ip || "" });
          node.appendChild(el("circle", { cx: px, cy: py, r: 14 }));
          node.appendChild(el("text", { x: px - 40, y: py + 28 }, pod.namespace + "/" + pod.name));
          group.appendChild(node);
          positions.set(key, { x: px, y: py });
          if (pod.ip) byIP.set(cluster.name + "|" + pod.ip, key);
        });
        svg.appendChild(group);
      });
      // Service to backend edges, to whichever cluster's pod has the backend's address.
      for (const [key, position] of positions) {
        if (!key.startsWith("svc:")) continue;
        for (const backend of position.service.backends || []) {
          const target = positions.get(byIP.get(backend.cluster + "|" + backend.ip));
          if (!target) continue;
          svg.insertBefore(el("line", { class: "backend", x1: position.x, y1: position.y, x2: target.x, y2: target.y }), svg.firstChild);
        }
      }
      // Flows between pods, one line per source, destination and verdict.
      const edges = new Map();
      for (const answer of state.flows) {
        const flow = answer.flow;
        if (!flow || !flow.source.pod_name || !flow.destination.pod_name) continue;
        const from = podKey(flow.source.cluster_name, flow.source.namespace, flow.source.pod_name);
        const to = podKey(flow.destination.cluster_name, flow.destination.namespace, flow.destination.pod_name);
        if (!positions.has(from) || !positions.has(to) || from === to) continue;
        const key = from + ">" + to + ">" + flow.verdict;
        const edge = edges.get(key) || { from, to, verdict: flow.verdict, count: 0,
          fromCluster: flow.source.cluster_name, toCluster: flow.destination.cluster_name };
        edge.count += 1;
        edges.set(key, edge);
      }
      for (const edge of edges.values()) {
        const a = positions.get(edge.from), b = positions.get(edge.to);
        const cross = edge.fromCluster !== edge.toCluster;
        const line = el("line", {
          class: "flow " + edge.verdict.toLowerCase() + (cross ? " cross-cluster" : ""),
          x1: a.x, y1: a.y, x2: b.x, y2: b.y, "stroke-width": Math.min(6, 1.5 + Math.log2(edge.count)),
          "data-from": edge.from, "data-to": edge.to, "data-from-cluster": edge.fromCluster, "data-to-cluster": edge.toCluster,
          "data-verdict": edge.verdict, "data-count": edge.count,
        });
        line.appendChild(el("title", {}, edge.from + " → " + edge.to + ": " + edge.count + " " + edge.verdict));
        flowLayer.appendChild(line);
      }
      svg.appendChild(flowLayer);
    }

    function drawTable() {
      const body = document.querySelector("#flows tbody");
      body.replaceChildren();
      for (const answer of state.flows.slice().reverse()) {
        const row = document.createElement("tr");
        const flow = answer.flow;
        let cells;
        if (flow) {
          const ports = flow.l4 && (flow.l4.TCP || flow.l4.UDP || flow.l4.SCTP);
          const service = flow.destination_service ? flow.destination_service.namespace + "/" + flow.destination_service.name : "";
          const l4 = flow.l4 ? Object.keys(flow.l4)[0] + (flow.l4.TCP && flow.l4.TCP.flags ? " " + Object.keys(flow.l4.TCP.flags).join(",") : "") : "";
          row.className = flow.verdict;
          cells = [flow.time, side(flow.source, flow.IP.source, ports && ports.source_port),
                   side(flow.destination, flow.IP.destination, ports && ports.destination_port), service,
                   flow.verdict + (flow.drop_reason_desc ? " (" + flow.drop_reason_desc + ")" : ""), l4, flow.node_name];
        } else if (answer.lost_events) {
          cells = [answer.time, answer.lost_events.num_events_lost + " flows lost", "", "", "", "", answer.node_name];
        } else {
          cells = [answer.time, "node unavailable", (answer.node_status || {}).message || "", "", "", "", answer.node_name];
        }
        cells.forEach((text, i) => {
          const cell = document.createElement("td");
          if (i === 4) cell.className = "verdict";
          cell.textContent = text === undefined || text === null ? "" : String(text);
          row.appendChild(cell);
        });
        body.appendChild(row);
      }
    }

    async function refresh() {
      try {
        const params = new URLSearchParams();
        for (const [key, value] of new FormData(document.getElementById("filters"))) if (value) params.append(key, value);
        const [map, flows] = await Promise.all([
          fetch("/api/map").then(r => r.json()),
          fetch("/api/flows?" + params).then(r => r.ok ? r.json() : Promise.reject(r.statusText)),
        ]);
        state.map = map;
        state.flows = flows;
        drawMap();
        drawTable();
        document.getElementById("status").textContent = (map.clusters || []).length + " clusters, " + flows.length + " flows, updated " + new Date().toLocaleTimeString();
        document.body.dataset.loaded = "true";
      } catch (error) {
        document.getElementById("status").textContent = "update failed: " + error;
      }
    }

    document.getElementById("filters").addEventListener("input", refresh);
    refresh();
    setInterval(refresh, 2000);
    """#
}
