// The requester's project form: one POST /projects, then the project's dashboard.
import { post, requireToken } from "./api.js";
import { $, fill, notice } from "./dom.js";
import { readSettings, settingsFields } from "./settings.js";

function spec(form) {
  const data = new FormData(form);
  return {
    name: data.get("name").trim(),
    task_type: data.get("task_type"),
    labels: data.get("labels").split(",").map((label) => label.trim()).filter(Boolean),
    instructions: data.get("instructions"),
    ...readSettings(form),
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

if (requireToken()) {
  fill($("#settings-fields"), settingsFields());
  $("#project-form").addEventListener("submit", create);
}
