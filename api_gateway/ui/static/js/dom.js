// Building the page without ever parsing data as HTML: every string becomes a text node.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function when(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const d = new Date(seconds * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(start, end) {
  if (start === null || start === undefined) return "–";
  const s = Math.max(0, (end ?? Date.now() / 1000) - start);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function badge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

export function progress(done, total) {
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  const fill = h("span", { class: "fill" });
  fill.style.width = `${pct}%`; // through the CSSOM: the CSP allows no style attributes
  return h("span", { class: "progress", title: `${pct}%` },
    h("span", { class: "bar" }, fill), h("span", { class: "nums" }, `${done}/${total}`));
}

export function number(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString();
}

export function percent(n) {
  return n === null || n === undefined ? "–" : `${Number(n).toFixed(0)} %`;
}

export function link(href, ...children) {
  return h("a", { href, dataset: { nav: "" } }, ...children);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function table(headers, rows, props = {}) {
  return h("table", { class: "grid", ...props },
    h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", {}, x))))),
    h("tbody", {}, rows));
}
