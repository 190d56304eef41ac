// Sign in with a token, then the projects the user may see: to work on, or to manage.
import { api, get, saveToken, signOut, token } from "./api.js";
import { $, fill, h, money, percent } from "./dom.js";

async function start() {
  $("#sign-out").addEventListener("click", signOut);
  $("#sign-in").addEventListener("submit", signIn);
  if (!token()) return ($("#sign-in").hidden = false);
  const me = await get("/me");
  fill($("#who"), `${me.name} (${me.role})`);
  $("#sign-out").hidden = false;
  const next = new URLSearchParams(location.search).get("next");
  if (next && next.startsWith("/ui/")) return location.replace(next);
  await (me.role === "worker" ? workerProjects() : managedProjects(me));
}

async function signIn(event) {
  event.preventDefault();
  const value = $("#token").value.trim();
  try {
    await api("GET", "/me", undefined, { token: value });
  } catch (error) {
    const box = $("#sign-in-error");
    box.hidden = false;
    return fill(box, error.status === 401 ? "This token is not valid." : error.message);
  }
  saveToken(value, $("#remember").checked);
  location.reload();
}

async function workerProjects() {
  const projects = (await get("/projects")).filter((p) => p.status === "active");
  const standings = await Promise.all(projects.map((p) => get(`/projects/${p.id}/me`)));
  head(["Project", "Pay per answer", "Your answers", "Earned", "Your accuracy", ""]);
  rows(projects.map((p, i) => [
    p.name, money(p.price), String(standings[i].answers), money(standings[i].earned),
    percent(standings[i].gold_accuracy),
    standings[i].banned ? h("span", { class: "muted" }, "banned") : h("a", { class: "button", href: `work.html?project=${p.id}` }, "Start"),
  ]));
}

async function managedProjects(me) {
  $("#new-project").hidden = !["admin", "requester"].includes(me.role);
  const projects = await get("/projects");
  head(["Project", "Status", "Price", "Spent / budget", ""]);
  rows(projects.map((p) => [
    p.name, h("span", { class: `status ${p.status}` }, p.status), money(p.price),
    `${money(p.spent)} / ${p.budget === null ? "no limit" : money(p.budget)}`,
    h("a", { class: "button", href: `project.html?project=${p.id}` }, "Dashboard"),
  ]));
}

function head(names) {
  fill($("#projects-head"), h("tr", {}, names.map((name) => h("th", {}, name))));
}

function rows(cells) {
  $("#projects").hidden = false;
  $("#projects-empty").hidden = cells.length > 0;
  fill($("#projects-body"), cells.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))));
}

start();
