// The review queue: doubtful items with all their answers; a click decides the label.
// Below it, the gold items the crowd misses most; a click corrects a wrong gold label, or takes
// back an ambiguous one (the item becomes a regular one).
import { del, get, post, projectParam, put, requireToken } from "./api.js";
import { $, fill, h, notice, number, percent } from "./dom.js";
import { renderItem } from "./item.js";

const projectId = projectParam();

async function start() {
  if (!requireToken()) return;
  $("#dashboard-link").setAttribute("href", `project.html?project=${projectId}`);
  try {
    const [project, queue, gold] = await Promise.all([
      get(`/projects/${projectId}`), get(`/projects/${projectId}/review`), get(`/projects/${projectId}/gold`)]);
    fill($("#queue"), queue.length ? queue.map((entry) => card(entry, project.labels)) : h("p", { class: "muted" }, "Nothing to review yet."));
    const missed = gold.filter((entry) => entry.missed > 0);
    fill($("#gold"), missed.length ? missed.map((entry) => goldCard(entry, project.labels)) : h("p", { class: "muted" }, "No gold item has been missed."));
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

function goldCard(entry, labels) {
  const explanation = h("input", { type: "text", placeholder: "explanation shown to workers who miss it (optional)" });
  const buttons = labels.filter((label) => label !== entry.gold_label).map((label) =>
    h("button", { type: "button", class: "secondary", onclick: () => correct(entry, label, explanation, box) }, `Correct to ${label}`));
  buttons.push(h("button", { type: "button", class: "secondary", title: "Too ambiguous to judge workers by: the crowd labels it from now on",
    onclick: () => removeGold(entry, box) }, "Not gold"));
  const votes = Object.entries(entry.votes).map(([label, count]) => `${label}: ${count}`).join(", ");
  const box = h("article", { class: "card gold", dataset: { item: String(entry.item_id) } },
    h("h2", {}, `Item ${entry.external_id || entry.item_id}`),
    h("p", { class: "muted" }, `gold label ${entry.gold_label}, missed by ${entry.missed} of ${entry.answers} (${percent(entry.miss_rate)}); votes ${votes}`),
    renderItem(entry.data),
    h("div", { class: "labels" }, buttons), explanation);
  return box;
}

async function correct(entry, label, explanation, box) {
  try {
    const result = await put(`/projects/${projectId}/items/${entry.item_id}/gold`, { label, explanation: explanation.value.trim() || null });
    const judged = result.workers.length === 1 ? "1 worker's gold answers" : `${result.workers.length} workers' gold answers`;
    fill(box, h("p", { class: "notice info" }, `Item ${entry.external_id || entry.item_id}: gold is now "${label}" (was "${result.previous_label}"); ${judged} judged again.`),
      tallies(result.workers));
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

async function removeGold(entry, box) {
  try {
    const result = await del(`/projects/${projectId}/items/${entry.item_id}/gold`);
    const taken = result.workers.length === 1 ? "1 worker's gold answers" : `${result.workers.length} workers' gold answers`;
    fill(box, h("p", { class: "notice info" }, `Item ${entry.external_id || entry.item_id} is no longer gold (was "${result.previous_label}"); ${taken} taken out of their gold tallies.`),
      tallies(result.workers));
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

// The workers a gold change re-judged, with their tallies now: a ban that rested on a wrong gold
// label shows here, to be lifted on the dashboard.
function tallies(workers) {
  if (!workers.length) return null;
  return h("ul", { class: "tallies" }, workers.map((w) => h("li", {},
    `${w.name}: ${w.gold_correct}/${w.gold_answers} gold answers right${w.banned ? " (banned: lift it on the dashboard if the wrong gold was why)" : ""}`)));
}

start();
