// Answers and skips waiting to reach the server, kept in localStorage so that none is lost:
// sent in order, retried with back-off while the network or the server is down.
import { ApiError, post } from "./api.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const afterPaint = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

export class Outbox {
  constructor(key, { onSent, onRefused, onState }) {
    this.key = key;
    this.onSent = onSent;
    this.onRefused = onRefused;
    this.onState = onState;
    this.items = this.load();
    // another tab of the same worker changed the queue: take its version (never overwrite it)
    window.addEventListener("storage", (event) => { if (event.key === this.key) this.items = this.load(); });
    this.running = null;
    this.wake = null;
  }

  load() {
    return JSON.parse(localStorage.getItem(this.key) || "[]");
  }

  // Take over a queue kept under an older key (before queues were the worker's own), so an upgrade
  // loses nothing: the server refuses an answer on another worker's lease, and the page says so.
  adopt(oldKey) {
    const waiting = JSON.parse(localStorage.getItem(oldKey) || "[]");
    if (!waiting.length) return;
    this.items = this.load().concat(waiting);
    this.save();
    localStorage.removeItem(oldKey);
  }

  // Read-modify-write on the stored queue, so two tabs never drop each other's operations.
  remove(op) {
    this.items = this.load().filter((x) => !(x.assignment_id === op.assignment_id && x.kind === op.kind));
    this.save();
  }

  save() {
    localStorage.setItem(this.key, JSON.stringify(this.items));
  }

  get size() {
    return this.items.length;
  }

  holds(assignmentId) {
    return this.items.some((op) => op.assignment_id === assignmentId);
  }

  // Saved at once; sent after the browser painted the next frame, so the page shows the next item first.
  add(op) {
    this.items = this.load();
    this.items.push(op);
    this.save();
    return afterPaint().then(() => this.flush());
  }

  // Take back an operation not sent yet; false when it already went (or is going) out.
  withdraw(assignmentId) {
    const index = this.items.findIndex((op) => op.assignment_id === assignmentId);
    if (index < 0 || (index === 0 && this.sending === assignmentId)) return false;
    this.remove(this.items[index]);
    return true;
  }

  retryNow() {
    if (this.wake) this.wake();
  }

  flush() {
    if (!this.running) this.running = this.drain().finally(() => (this.running = null));
    return this.running;
  }

  async drain() {
    let delay = 500;
    while (this.items.length) {
      const op = this.items[0];
      this.sending = op.assignment_id;
      try {
        const result = await send(op);
        this.remove(op);
        delay = 500;
        this.onState({ waiting: this.items.length, failing: false });
        this.onSent(op, result);
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          // the token was refused: keep every answer on this device for when the worker signs in again
          this.onState({ waiting: this.items.length, failing: true, retryIn: 0, error });
          return;
        }
        if (!(error instanceof ApiError) || !error.transient) {
          this.remove(op);
          this.onRefused(op, error);
          continue;
        }
        this.onState({ waiting: this.items.length, failing: true, retryIn: delay, error });
        await new Promise((resolve) => {
          this.wake = resolve;
          sleep(delay).then(resolve);
        });
        this.wake = null;
        delay = Math.min(delay * 2, 15000);
      } finally {
        this.sending = null;
      }
    }
    this.onState({ waiting: 0, failing: false });
  }
}

function send(op) {
  if (op.kind === "skip") return post(`/assignments/${op.assignment_id}/skip`);
  return post(`/assignments/${op.assignment_id}/answer`, { label: op.label, seconds: op.seconds });
}
