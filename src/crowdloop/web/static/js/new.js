// The requester's project form: one POST /projects, then the project's dashboard.
import { post, requireToken } from "./api.js";
import { $, notice } from "./dom.js";

function spec(form) {
  const data = new FormData(form);
  const numberOf = (name) => (data.get(name) === "" ? null : Number(data.get(name)));
  return {
    name: data.get("name").trim(),
    labels: data.get("labels").split(",").map((label) => label.trim()).filter(Boolean),
    instructions: data.get("instructions"),
    min_overlap: numberOf("min_overlap"),
    max_overlap: numberOf("max_overlap"),
    confidence_target: numberOf("confidence_target"),
    gold_share: numberOf("gold_share"),
    price: numberOf("price"),
    budget: numberOf("budget"),
    open_to_all: data.get("open_to_all") === "on",
    rules: { training_feedback: data.get("training_feedback") === "on" },
  };
}

async function create(event) {
  event.preventDefault();
  try {
    const project = await post("/projects", spec(event.target));
    location.href = `project.html?project=${project.id}`;
  } catch (error) {
    notice($("#form-error"), error.message, "error");
  }
}

if (requireToken()) $("#project-form").addEventListener("submit", create);
