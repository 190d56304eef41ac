// Small SVG charts drawn by the page itself: nothing is loaded from elsewhere.
const SVG = "http://www.w3.org/2000/svg";

function node(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// Vertical bars with a caption under the first, middle and last bar, and a tooltip on each.
export function barChart(values, { captions = [], width = 420, height = 160, label = "" } = {}) {
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
  const top = Math.max(1, ...values);
  const base = height - 20;
  const step = width / Math.max(values.length, 1);
  values.forEach((value, index) => {
    const barHeight = (value / top) * (base - 14);
    const bar = node("rect", { x: index * step + 1, y: base - barHeight, width: Math.max(step - 2, 1), height: barHeight, class: "bar" });
    bar.append(node("title", {}, `${captions[index] ?? index}: ${value}`));
    svg.append(bar);
  });
  svg.append(node("line", { x1: 0, y1: base, x2: width, y2: base, class: "axis" }));
  svg.append(node("text", { x: 2, y: 10, class: "tick" }, `max ${top}`));
  for (const index of new Set([0, Math.floor((values.length - 1) / 2), values.length - 1])) {
    if (captions[index] === undefined) continue;
    const anchor = index === 0 ? "start" : index === values.length - 1 ? "end" : "middle";
    const x = index === 0 ? 0 : index === values.length - 1 ? width : (index + 0.5) * step;
    svg.append(node("text", { x, y: height - 4, "text-anchor": anchor, class: "tick" }, captions[index]));
  }
  return svg;
}

// A horizontal meter: value out of max (an unknown max draws an empty track).
// warn: red from 90% (a budget running out), where progress near its end is good news, not a warning.
export function meter(value, max, { width = 420, height = 14, warn = false } = {}) {
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "meter", role: "img" });
  const share = max ? Math.min(value / max, 1) : 0;
  svg.append(node("rect", { x: 0, y: 0, width, height, rx: 4, class: "track" }));
  svg.append(node("rect", { x: 0, y: 0, width: share * width, height, rx: 4, class: warn && share >= 0.9 ? "fill high" : "fill" }));
  return svg;
}
