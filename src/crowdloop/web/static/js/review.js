// The review queue: doubtful items with all their answers; a click decides the label.
import { get, post, projectParam, requireToken } from "./api.js";
import { $, fill, h, notice, number, percent } from "./dom.js";
import { renderItem } from "./item.js";

const projectId = projectParam();

async function start() {
  if (!requireToken()) return;
  $("#dashboard-link").setAttribute("href", `project.html?project=${projectId}`);
  try {
    const [project, queue] = await Promise.all([get(`/projects/${projectId}`), get(`/projects/${projectId}/review`)]);
    if (!queue.length) return fill($("#queue"), h("p", { class: "muted" }, "Nothing to review yet."));
    fill($("#queue"), queue.map((entry) => card(entry, project.labels)));
  } catch (error) {
    notice($("#message"), error.status === 404 ? "No such project." : error.message, "error");
  }
}

function card(entry, labels) {
  const explanation = h("input", { type: "text", placeholder: "explanation shown to workers (optional)" });
  const buttons = labels.map((label) =>
    h("button", { type: "button", class: label === entry.label ? "" : "secondary", onclick: () => decide(entry, label, explanation, box) }, label));
  const box = h("article", { class: "card review", dataset: { item: String(entry.item_id) } },
    h("h2", {}, `Item ${entry.external_id || entry.item_id}`),
    h("p", { class: "muted" }, `current label ${entry.label ?? "–"}, confidence ${percent(entry.confidence)}, ` +
      `disagreement ${number(entry.disagreement, 2)}`),
    renderItem(entry.data),
    h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Answer"), h("th", {}, "Seconds"))),
      h("tbody", {}, entry.answers.map((a) => h("tr", {}, h("td", {}, a.worker), h("td", {}, a.label), h("td", {}, number(a.seconds, 1)))))),
    h("div", { class: "labels" }, buttons), explanation);
  return box;
}

async function decide(entry, label, explanation, box) {
  try {
    await post(`/projects/${projectId}/review/${entry.item_id}`, { label, explanation: explanation.value.trim() || null });
    fill(box, h("p", { class: "notice info" }, `Item ${entry.external_id || entry.item_id}: decided "${label}" (now gold).`));
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

start();
