// A project's overlap, money and quality-control settings: one definition of the fields, drawn
// into the new-project form and into the dashboard's settings form, so the two never disagree.
import { h } from "./dom.js";

// The categorical aggregators of crowdloop.quality (CATEGORICAL_METHODS; a test keeps them equal).
const METHODS = [
  "default", "majority_vote", "wawa", "zero_based_skill", "dawid_skene", "one_coin_dawid_skene",
  "shrunk_dawid_skene", "glad", "mace", "ibcc",
];

// Top-level project fields; an `optional` one left blank means no limit (budget) or the rule off.
const SETTINGS = [
  { name: "min_overlap", label: "Min overlap", min: 1, max: 100, step: 1, value: 1 },
  { name: "max_overlap", label: "Max overlap", min: 1, max: 100, step: 1, value: 3 },
  { name: "confidence_target", label: "Confidence target (over 0.5)", min: 0.501, max: 1, step: "any", value: 0.95 },
  { name: "gold_share", label: "Gold share", min: 0, step: "any", value: 0.1 },
  { name: "price", label: "Price per answer", min: 0, step: "any", value: 0.02 },
  { name: "budget", label: "Budget (empty: no limit)", min: 0, step: "any", optional: true },
  { name: "lease_seconds", label: "Seconds a worker holds a task", min: 5, max: 86400, step: 1, value: 600 },
];

// QualityRules (crowdloop.crowd.schemas): a blank box turns the rule off.
const RULES = [
  { name: "min_gold_accuracy", label: "Ban below this gold accuracy", min: 0, max: 1, step: "any", optional: true },
  { name: "min_gold_answers", label: "…once a worker has this many gold answers", min: 1, step: 1, value: 3 },
  { name: "min_answer_seconds", label: "Answers faster than (seconds) are flagged", min: 0, step: "any", optional: true },
  { name: "ban_after_fast_answers", label: "Ban after this many fast answers", min: 1, step: 1, optional: true },
  { name: "max_skips_in_row", label: "Ban after this many skips in a row", min: 1, step: 1, optional: true },
  { name: "max_answers_per_worker", label: "Answers per worker at most", min: 1, step: 1, optional: true },
  { name: "qualification_gold", label: "Qualification test: each worker's first gold tasks", min: 1, max: 100,
    step: 1, optional: true },
  { name: "hold_back_quantile", label: "Hold back workers rated below this share of the crowd", min: 0,
    step: "any", optional: true },
];

const OVERLAP_HELP = "Dynamic overlap: an item gets answers until the crowd model's confidence in its label reaches "
  + "the target, at least min overlap and at most max overlap of them. Gold share: the part of a worker's tasks that "
  + "are control questions (the first, then at random places).";

const RULE_HELP = "Blank: the rule is off. Held-back workers get gold, and only the items no other worker can still take; "
  + "0.5 keeps the work with the better half. Ratings are refreshed at every aggregation.";

// A box the API cannot take blank is `required`, so the browser says so before anything is sent.
function numberInput(field, value) {
  const shown = value === null || value === undefined ? "" : String(value);
  return h("label", {}, field.label,
    h("input", { name: field.name, type: "number", min: field.min, max: field.max, step: field.step, value: shown,
      required: !field.optional }));
}

// The settings grid and the quality-control fieldset, filled from `project` (the API's ProjectOut)
// or, for a new project, from the defaults.
export function settingsFields(project = null) {
  const rules = (project && project.rules) || {};
  // A new project may leave the method to the server (CROWDLOOP_DEFAULT_METHOD): the "" option.
  const method = project ? project.aggregation_method : "";
  const known = project ? METHODS : ["", ...METHODS];
  const methods = known.includes(method) ? known : [...known, method]; // a name stored before names were normalised
  return [
    h("div", { class: "grid" },
      SETTINGS.map((field) => numberInput(field, project ? project[field.name] : field.value)),
      h("label", {}, "Aggregation method",
        h("select", { name: "aggregation_method" },
          methods.map((name) => h("option", { value: name, selected: name === method }, name ? name.replaceAll("_", " ") : "the server's default"))))),
    h("label", {}, "Item fields (comma-separated; empty: those of the first import)",
      h("input", { name: "fields", type: "text", value: ((project && project.fields) || []).join(", "),
        placeholder: "text, text_b" })),
    h("label", { class: "inline" },
      h("input", { name: "open_to_all", type: "checkbox", checked: !project || project.open_to_all !== false }),
      "Open to all workers (unticked: only the workers you grant access)"),
    h("p", { class: "muted small" }, OVERLAP_HELP),
    h("fieldset", { class: "rules" },
      h("legend", {}, "Quality control"),
      h("div", { class: "grid" }, RULES.map((field) => numberInput(field, field.name in rules ? rules[field.name] : field.value))),
      h("label", { class: "inline" },
        h("input", { name: "training_feedback", type: "checkbox", checked: rules.training_feedback !== false }),
        "Show the right answer after a wrong control answer"),
      h("p", { class: "muted small" }, RULE_HELP)),
  ];
}

function valueOf(data, field) {
  const text = data.get(field.name);
  return text === null || text === "" ? null : Number(text);
}

// What the fields hold, as ProjectCreate / ProjectUpdate want it; a blank rule is sent as null, so
// saving the dashboard's form turns that rule off.
export function readSettings(form) {
  const data = new FormData(form);
  const settings = Object.fromEntries(SETTINGS.map((field) => [field.name, valueOf(data, field)]));
  const rules = Object.fromEntries(RULES.map((field) => [field.name, valueOf(data, field)]));
  rules.training_feedback = data.get("training_feedback") === "on";
  // An import row with a field not listed is rejected; none listed: the first import lists them.
  const fields = String(data.get("fields") || "").split(",").map((name) => name.trim()).filter(Boolean);
  return { ...settings, aggregation_method: data.get("aggregation_method") || null, open_to_all: data.get("open_to_all") === "on",
    rules, ...(fields.length ? { fields } : {}) };
}
