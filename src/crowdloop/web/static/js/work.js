// The labeling page: one item at a time, a key per label, the next item already in hand.
import { ApiError, get, post, projectParam, requireToken } from "./api.js";
import { $, fill, h, money, notice, percent } from "./dom.js";
import { renderItem } from "./item.js";
import { Outbox } from "./outbox.js";

const AHEAD = 2; // leases held: the item shown and the next one
const timings = (window.crowdloopTimings = []); // key press -> next item painted, ms

const state = {
  projectId: projectParam(),
  project: null,
  current: null,
  queue: [],
  shownAt: 0,
  done: new Set(), // answered or skipped here, perhaps not yet on the server
  last: null, // the last answer, for undo
  pendingPress: null,
  finished: false,
  away: false, // an item's lease ran out on screen: nothing is leased until the worker says they are back
  session: { answers: 0, earned: 0 },
  refilling: null,
  refillAgain: false,
};

let outbox = null;
const newOutbox = (userId) => new Outbox(`crowdloop.outbox.${userId}.${state.projectId}`, {
  onSent: (op, result) => sent(op, result),
  onRefused: (op, error) => refused(op, error),
  onState: (status) => connection(status),
});

async function start() {
  if (!requireToken()) return;
  if (!state.projectId) return stop("No project chosen.", "error");
  try {
    outbox = newOutbox((await get("/me")).id);
    outbox.adopt(`crowdloop.outbox.${state.projectId}`);
    state.project = await get(`/projects/${state.projectId}`);
  } catch (error) {
    return stop(error.status === 404 ? "No such project, or it is not open to you." : error.message, "error");
  }
  fill($("#project-name"), state.project.name);
  fill($("#price"), `${money(state.project.price)} per answer`);
  fill($("#instructions-text"), state.project.instructions || "No instructions.");
  labelButtons(state.project.labels);
  for (const op of outbox.items) state.done.add(op.assignment_id);
  document.addEventListener("keydown", onKey);
  window.addEventListener("online", () => outbox.retryNow());
  $("#skip").addEventListener("click", (event) => skip(event.timeStamp));
  $("#undo").addEventListener("click", () => undo());
  standing();
  setInterval(dropExpired, 1000);
  outbox.flush().then(() => refill());
}

function stop(text, kind) {
  state.current = null; // keys held ready answer nothing now
  state.queue = [];
  fill($("#item"), h("p", { class: `notice ${kind}` }, text));
  $("#labels").hidden = true;
  $("#actions").hidden = true;
}

function labelButtons(labels) {
  const buttons = labels.map((label, index) =>
    h("button", { type: "button", class: "label", dataset: { label }, onclick: (event) => answer(label, event.timeStamp) },
      index < 9 ? h("kbd", {}, String(index + 1)) : null, label),
  );
  fill($("#labels"), buttons);
}

// --- the queue of leased tasks ---------------------------------------------------------------------

function refill() {
  if (state.finished || state.away) return Promise.resolve();
  if (state.refilling) {
    state.refillAgain = true; // what is held changed meanwhile: ask once more afterwards
    return state.refilling;
  }
  state.refilling = fetchTasks().finally(() => {
    state.refilling = null;
    if (state.refillAgain) {
      state.refillAgain = false;
      refill();
    }
  });
  return state.refilling;
}

async function fetchTasks() {
  try {
    const tasks = await post(`/projects/${state.projectId}/tasks/batch?count=${AHEAD}`);
    take(tasks);
    if (!tasks.length && !state.current && !state.away && !outbox.size) finish(); // away: the notice stays
  } catch (error) {
    if (error instanceof ApiError && !error.transient) return stop(error.message, "error");
    notice($("#connection"), "Cannot reach the server to fetch tasks; retrying…", "warn");
    setTimeout(() => refill(), 2000);
  }
}

// A lease that runs out in the next seconds cannot take an answer: never show it, never answer it.
const live = (task) => new Date(task.expires_at).getTime() - Date.now() > 3000;

function dropExpired() {
  const before = state.queue.length;
  state.queue = state.queue.filter(live);
  if (state.current && !live(state.current)) return away();
  if (state.queue.length !== before || !state.current) refill();
}

// The item on screen ran out of time: the worker is taken to be away. The page stops leasing (a tab
// left open took two new items every lease period, for ever, keeping them from other workers and
// counting them against the budget) and waits for Enter or the button; the items held run out too.
function away() {
  state.current = null;
  state.away = true;
  $("#labels").hidden = true;
  $("#actions").hidden = true;
  notice($("#message"), "", "info");
  fill($("#item"), h("div", { class: "notice warn away" },
    h("p", {}, "The time to answer that item ran out, so it went back to the other workers. No new items are taken for you meanwhile."),
    h("button", { type: "button", id: "back", onclick: () => back() }, h("kbd", {}, "Enter"), " I am back")));
  $("#back").focus();
}

function back() {
  if (!state.away) return;
  state.away = false;
  if (state.finished) return; // the project finished meanwhile: its notice stands
  $("#labels").hidden = false;
  $("#actions").hidden = false;
  state.queue = state.queue.filter(live);
  if (state.queue.length) show(state.queue.shift());
  else fill($("#item"), h("p", { class: "loading" }, "Loading the next item…"));
  refill();
}

function take(tasks) {
  tasks = tasks.filter(live);
  const held = new Set([state.current, ...state.queue].filter(Boolean).map((t) => t.assignment_id));
  for (const task of tasks) {
    if (!held.has(task.assignment_id) && !state.done.has(task.assignment_id)) state.queue.push(task);
  }
  if (!state.current && !state.away && state.queue.length) show(state.queue.shift());
}

function show(task) {
  state.current = task;
  fill($("#item"), renderItem(task.data));
  $("#labels").hidden = false;
  $("#actions").hidden = false;
  state.shownAt = performance.now();
  if (state.pendingPress !== null) measure(state.pendingPress);
  state.pendingPress = null;
}

function advance(pressedAt) {
  state.current = null;
  state.queue = state.queue.filter(live);
  state.pendingPress = pressedAt;
  if (state.queue.length) show(state.queue.shift());
  else fill($("#item"), h("p", { class: "loading" }, "Loading the next item…"));
}

// Key press to the next item on screen: measured after the browser painted it.
function measure(pressedAt) {
  requestAnimationFrame(() => setTimeout(() => timings.push(performance.now() - pressedAt), 0));
}

const PAUSED_POLL_MS = 30000;

// No task came: a finished project is done for good; a paused one (or one whose items are all taken
// for now) is asked again every 30 s, so the page picks up where it left off when work comes back.
async function finish() {
  state.finished = true;
  let status = "active";
  try {
    status = (await get(`/projects/${state.projectId}`)).status;
  } catch {
    // the message below still holds
  }
  if (status === "finished") return stop("This project is finished. Thank you!", "info");
  stop(status === "paused" ? "This project is paused; this page checks again every 30 s."
    : "Nothing left to do on this project for now; this page checks again every 30 s.", "info");
  setTimeout(() => {
    state.finished = false;
    refill(); // shows the next task if one came, else says so again
  }, PAUSED_POLL_MS);
}

// --- answering, skipping, undoing ------------------------------------------------------------------

// pressedAt: the event's timeStamp (when the key went down), on the performance.now() clock
function answer(label, pressedAt = performance.now()) {
  const task = state.current;
  if (!task) return;
  const seconds = Math.round(pressedAt - state.shownAt) / 1000;
  state.done.add(task.assignment_id);
  state.last = { task, label };
  $("#undo").disabled = false;
  $("#feedback").hidden = true; // feedback on an earlier answer has been seen: it must not sit over this item
  advance(pressedAt);
  const excerpt = excerptOf(task.data);
  outbox.add({ kind: "answer", assignment_id: task.assignment_id, label, seconds, excerpt }).then(() => refill());
}

function skip(pressedAt = performance.now()) {
  const task = state.current;
  if (!task) return;
  state.done.add(task.assignment_id);
  state.last = null;
  $("#undo").disabled = true;
  $("#feedback").hidden = true;
  advance(pressedAt);
  outbox.add({ kind: "skip", assignment_id: task.assignment_id }).then(() => refill());
}

async function undo() {
  const last = state.last;
  if (!last) return;
  state.last = null;
  $("#undo").disabled = true;
  if (new Date(last.task.expires_at) <= new Date()) return notice($("#message"), "Too late to undo: the task's lease has expired.", "warn");
  let task = last.task;
  if (!outbox.withdraw(last.task.assignment_id)) {
    if (outbox.size) notice($("#message"), "Undo waits for the connection: the answer is withdrawn once it reaches the server.", "info");
    await outbox.flush();
    try {
      task = await post(`/assignments/${last.task.assignment_id}/undo`);
    } catch (error) {
      return notice($("#message"), `Cannot undo: ${error.message}`, "warn");
    }
    state.session.answers -= 1;
    state.session.earned -= state.project.price;
    standing();
  }
  state.done.delete(task.assignment_id);
  state.away = false; // the worker is here: undoing says so as well as Enter does
  if (state.current) state.queue.unshift(state.current);
  show(task);
  notice($("#message"), `Undone: your answer "${last.label}" was withdrawn.`, "info");
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") undo();
    return;
  }
  if (["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) return;
  if (state.away) {
    if (event.key === "Enter" || event.key === " ") {
      back();
      event.preventDefault();
    }
    return;
  }
  const labels = state.project ? state.project.labels : [];
  if (/^[1-9]$/.test(event.key) && Number(event.key) <= labels.length) answer(labels[Number(event.key) - 1], event.timeStamp);
  else if (event.key === "0" || event.key.toLowerCase() === "s") skip(event.timeStamp); // Shift or Caps Lock too
  else if (event.key.toLowerCase() === "u" || event.key === "Backspace") undo();
  else return;
  event.preventDefault();
}

// --- what the server said --------------------------------------------------------------------------

function sent(op, result) {
  if (op.kind !== "answer") return;
  if (result.feedback) feedback(result.feedback, op);
  if (result.duplicate) {
    // the item was answered already, in another tab or window: that answer stands, not this one
    if (result.label !== undefined && result.label !== op.label) {
      notice($("#message"), `"${op.excerpt || "An item"}" was already answered "${result.label}" (in another tab?); your "${op.label}" was not recorded.`, "warn");
    }
    return standing();
  }
  state.session.answers += 1;
  state.session.earned += result.reward;
  standing();
}

function refused(op, error) {
  state.done.add(op.assignment_id);
  if (state.last && state.last.task.assignment_id === op.assignment_id) state.last = null;
  const what = op.kind === "answer" ? `Your answer "${op.label}"` : "Your skip";
  notice($("#message"), `${what} was not accepted: ${error.message}`, "error");
  if (/is finished/.test(error.message)) {  // the items still held would be refused too
    state.queue = [];
    state.current = null;
    state.finished = true;
    return stop("This project is finished. Thank you!", "info");
  }
  refill();
}

function connection(status) {
  if (!status.failing) return notice($("#connection"), status.waiting ? `Sending ${status.waiting}…` : "", "info");
  const seconds = Math.round(status.retryIn / 1000) || 1;
  notice($("#connection"),
    `Connection problem: ${status.waiting} answer(s) saved on this device, retrying in ${seconds} s. Nothing is lost.`,
    "warn");
}

// Feedback comes once the answer reaches the server, when the next item is already shown: it names
// the item it is about, and the next answer or skip hides it.
function feedback(info, op) {
  const box = $("#feedback");
  const which = op.excerpt ? `Your answer "${op.label}" to "${op.excerpt}"` : `Your answer "${op.label}"`;
  fill(box, h("strong", {}, `${which} was a control question, and not right.`), " ",
    "The right answer is ", h("b", {}, String(info.expected)), ".",
    info.explanation ? h("p", {}, info.explanation) : null,
    h("button", { type: "button", onclick: () => (box.hidden = true) }, "Got it"));
  box.hidden = false;
}

// The first words of an item, to name it once it has left the screen.
function excerptOf(data) {
  const first = Object.values(data || {}).find((value) => typeof value === "string" && value.trim());
  if (!first) return "";
  const text = first.trim().replace(/\s+/g, " ");
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

async function standing() {
  try {
    const mine = await get(`/projects/${state.projectId}/me`);
    fill($("#answers"), String(mine.answers));
    fill($("#earned"), money(mine.earned));
    fill($("#accuracy"), mine.gold_accuracy === null ? "–" : percent(mine.gold_accuracy));
    if (mine.banned) stop("You can no longer work on this project.", "error");
  } catch (error) {
    /* the numbers wait for the next answer */
  }
}

start();
