// The requester's dashboard of one project, refreshed every few seconds; import, start and pause.
import { api, download, get, patch, post, projectParam, requireToken } from "./api.js";
import { barChart, meter } from "./charts.js";
import { $, fill, h, money, notice, number, percent } from "./dom.js";
import { readSettings, settingsFields } from "./settings.js";

const REFRESH_MS = 2000;
const STALE = "Cannot refresh the dashboard";
const projectId = projectParam();

async function start() {
  if (!requireToken()) return;
  $("#review-link").setAttribute("href", `review.html?project=${projectId}`);
  $("#start").addEventListener("click", () => setStatus("active"));
  $("#pause").addEventListener("click", () => setStatus("paused"));
  $("#upload-form").addEventListener("submit", upload);
  $("#aggregate").addEventListener("click", aggregate);
  $("#settings-form").addEventListener("submit", saveSettings);
  for (const button of document.querySelectorAll("#exports button")) button.addEventListener("click", () => exportFile(button));
  try {
    const project = await get(`/projects/${projectId}`);
    fill($("#project-name"), project.name);
    fill($("#settings-fields"), settingsFields(project));
  } catch (error) {
    return notice($("#message"), error.status === 404 ? "No such project." : error.message, "error");
  }
  refresh();
}

async function refresh() {
  try {
    draw(await get(`/projects/${projectId}/dashboard`));
  } catch (error) {
    notice($("#message"), `${STALE}: ${error.message}`, "warn");
  }
  setTimeout(refresh, REFRESH_MS);
}

function draw(d) {
  const message = $("#message");
  if (message.textContent.startsWith(STALE)) message.hidden = true; // the refresh works again: its warning goes
  fill($("#status"), d.status);
  $("#status").className = `status ${d.status}`;
  $("#start").hidden = !["draft", "paused", "finished"].includes(d.status);
  fill($("#start"), { draft: "Start", paused: "Resume", finished: "Reopen" }[d.status] ?? "Start");
  $("#pause").hidden = d.status !== "active";
  const regular = d.items - d.gold_items;
  fill($("#progress-text"), `${d.items_done} / ${regular} items done`);
  fill($("#progress-meter"), meter(d.items_done, regular));
  fill($("#answers-text"), `${d.answers} answers, ${d.gold_items} gold items, ${d.labels} aggregated labels`);
  fill($("#rate"), number(d.answers_per_minute, 1));
  fill($("#spent"), money(d.spent));
  fill($("#budget-meter"), meter(d.spent, d.budget, { warn: true }));
  fill($("#budget-text"), d.budget === null ? "no budget limit" : `of ${money(d.budget)}${d.budget > 0 ? ` (${percent(d.spent / d.budget)})` : ""}`);
  fill($("#cost"), money(d.cost_per_label));
  fill($("#cost-item"), d.cost_per_done_item === null ? "" : `${money(d.cost_per_done_item)} per finished item`);
  fill($("#alpha"), d.alpha === null ? "–" : number(d.alpha, 3));
  const minutes = d.timeline.map((_, i) => (i === d.timeline.length - 1 ? "now" : `-${d.timeline.length - 1 - i} min`));
  fill($("#timeline"), barChart(d.timeline, { captions: minutes, label: "answers per minute" }));
  const bins = d.confidence_histogram.map((_, i) => `${i / 10}–${(i + 1) / 10}`);
  fill($("#histogram"), barChart(d.confidence_histogram, { captions: bins, label: "items per confidence bin" }));
  workers(d.workers);
}

function workers(rows) {
  // Rows are updated in place: a row the requester is in (typing a reason, on its button) or has typed
  // a reason into is left alone; moving or re-creating it would drop the keyboard focus and the text.
  const body = $("#workers-body");
  const old = new Map([...body.children].map((tr) => [tr.dataset.worker, tr]));
  const busy = (tr) => tr.contains(document.activeElement) || tr.querySelector("input").value !== "";
  let previous = null;
  for (const w of rows) {
    const id = String(w.worker_id);
    let tr = old.get(id);
    old.delete(id);
    if (!tr || !busy(tr)) {
      const fresh = workerRow(w);
      if (tr) tr.replaceWith(fresh);
      tr = fresh;
    }
    const wanted = previous ? previous.nextSibling : body.firstChild;
    if (tr !== wanted && !busy(tr)) body.insertBefore(tr, wanted);
    previous = tr;
  }
  for (const tr of old.values()) tr.remove();
}

function workerRow(w) {
  const reason = h("input", { type: "text", placeholder: "reason", "aria-label": `reason for ${w.name}`,
    onkeydown: (event) => event.key === "Enter" && ban(w.worker_id, action, reason) });
  const action = w.banned ? "unban" : "ban";
  const button = h("button", { type: "button", class: w.banned ? "secondary" : "danger",
    onclick: () => ban(w.worker_id, action, reason) }, w.banned ? "Unban" : "Ban");
  return h("tr", { dataset: { worker: String(w.worker_id) }, class: w.banned ? "banned" : "" },
    h("td", {}, w.name), h("td", {}, String(w.answers)), h("td", {}, percent(w.gold_accuracy)),
    h("td", {}, `${w.skipped} / ${w.expired}`, w.expired_gold ? h("div", { class: "muted small" }, `${w.expired_gold} gold ran out`) : null),
    h("td", {}, number(w.reliability, 2), w.held_back ? h("div", { class: "muted small" }, "held back") : null),
    h("td", {}, number(w.mean_seconds, 1)), h("td", {}, money(w.earned)),
    h("td", {}, w.hourly_pay === null ? "–" : `${money(w.hourly_pay)}/h`),
    h("td", { class: "ban" }, w.last_ban_event ? h("div", { class: "muted small" }, w.last_ban_event) : null, reason, button));
}

async function ban(workerId, action, input) {
  const reason = input.value.trim();
  if (!reason) return notice($("#message"), `Give a reason to ${action} this worker.`, "warn");
  try {
    await post(`/projects/${projectId}/workers/${workerId}/${action}`, { reason });
    input.value = "";
    document.activeElement.blur(); // the row is redrawn with its new state, and the keyboard stays on it
    draw(await get(`/projects/${projectId}/dashboard`));
    const row = $(`#workers-body tr[data-worker="${workerId}"] button`);
    if (row) row.focus();
    notice($("#message"), `Worker ${action === "ban" ? "banned" : "unbanned"}: ${reason}`, "info");
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

async function setStatus(status) {
  try {
    const before = $("#status").textContent;
    await patch(`/projects/${projectId}`, { status });
    const d = await get(`/projects/${projectId}/dashboard`);
    draw(d); // at once, not at the next refresh
    if (status === "active") notice($("#message"), ...opened(before, d));
    const other = $(status === "active" ? "#pause" : "#start"); // the keyboard stays on the header
    if (!other.hidden) other.focus();
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

// What a worker will find in the project just opened: an empty project or one with every item done
// is open to nobody's benefit, which the requester should hear at once rather than from idle workers.
function opened(before, d) {
  const regular = d.items - d.gold_items;
  const open = regular - d.items_done;
  if (regular === 0) return ["The project is active but has no items: import items so workers have work.", "warn"];
  if (open === 0) return ["The project is active, but every item is done: workers get work again only from items you import.", "warn"];
  const verb = before === "finished" ? "Reopened" : before === "paused" ? "Resumed" : "Started";
  return [`${verb}: ${open} ${open === 1 ? "item wants" : "items want"} answers.`, "info"];
}

// Overlap, target, money and rules take effect on the next request for work and the next aggregation.
async function saveSettings(event) {
  event.preventDefault();
  try {
    const project = await patch(`/projects/${projectId}`, readSettings(event.target));
    fill($("#settings-fields"), settingsFields(project));
    notice($("#settings-message"), "Settings saved.", "info");
  } catch (error) {
    notice($("#settings-message"), `Not saved: ${error.message}`, "error");
  }
}

async function exportFile(button) {
  button.disabled = true;
  try {
    await download(`/projects/${projectId}/${button.dataset.path}`, `project-${projectId}-${button.dataset.file}`);
  } catch (error) {
    notice($("#message"), `Export failed: ${error.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function aggregate() {
  try {
    const run = await post(`/projects/${projectId}/aggregate`);
    notice($("#message"), `Aggregated ${run.answers} answers into ${run.labels} labels (${run.method}).`, "info");
  } catch (error) {
    notice($("#message"), error.message, "error");
  }
}

// An item of a near-duplicate pair as the file names it: its row and id; an earlier item by its id.
function nearName(row, externalId, itemId) {
  const id = externalId === null ? "" : ` (id ${externalId})`;
  return row === null ? `item ${itemId}${id}` : `row ${row}${id}`;
}

async function upload(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("#items-file").files[0]);
  try {
    report(await api("POST", `/projects/${projectId}/items/upload`, form));
  } catch (error) {
    fill($("#import-report"), h("p", { class: "notice error" }, `Import refused: ${error.message}`));
  }
}

function report(r) {
  fill($("#import-report"),
    h("p", { class: "notice info", id: "import-summary" },
      `${r.received} rows received: ${r.created} items created, ${r.gold_added} items made gold, ` +
      `${r.duplicates} duplicates merged, ${r.rejected.length} rejected, ${r.near_duplicates.length} near duplicates.`),
    r.rejected.length ? h("ul", { class: "rejected" }, r.rejected.map((x) => h("li", {}, `row ${x.row}: ${x.reason}`))) : null,
    r.near_duplicates.length
      ? h("ul", { class: "near" }, r.near_duplicates.map((p) => h("li", {},
        `${nearName(p.row, p.external_id, p.item_id)} is like ` +
        `${nearName(p.similar_row, p.similar_external_id, p.similar_item_id)} (similarity ${number(p.similarity, 2)})`)))
      : null);
}

start();
