// An item as the worker (or the reviewer) sees it: text, a pair of texts side by side, images by URL.
import { h } from "./dom.js";

const IMAGE_KEY = /(^|_)(image|img|photo|picture)(_?url)?$/i;
const IMAGE_URL = /^https?:\/\/\S+\.(png|jpe?g|gif|webp|svg|bmp)(\?\S*)?$/i;

function isImage(key, value) {
  return typeof value === "string" && /^https?:\/\//i.test(value) && (IMAGE_KEY.test(key) || IMAGE_URL.test(value));
}

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function renderItem(data) {
  const entries = Object.entries(data || {});
  const images = entries.filter(([key, value]) => isImage(key, value));
  const texts = entries.filter(([key, value]) => !isImage(key, value));
  const parts = [];
  if (texts.length === 1) parts.push(h("div", { class: "item-text", dir: "auto" }, text(texts[0][1])));
  if (texts.length > 1) {
    parts.push(
      h("div", { class: "item-pair" },
        texts.map(([key, value]) => h("section", { class: "item-side" }, h("h3", {}, key), h("div", { class: "item-text", dir: "auto" }, text(value)))),
      ),
    );
  }
  for (const [key, url] of images) {
    parts.push(h("figure", { class: "item-image" }, h("img", { src: url, alt: key, referrerpolicy: "no-referrer" })));
  }
  return h("div", { class: "item" }, parts);
}
