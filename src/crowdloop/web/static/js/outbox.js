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
    this.items = JSON.parse(localStorage.getItem(key) || "[]");
    this.running = null;
    this.wake = null;
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
    this.items.push(op);
    this.save();
    return afterPaint().then(() => this.flush());
  }

  // Take back an operation not sent yet; false when it already went (or is going) out.
  withdraw(assignmentId) {
    const index = this.items.findIndex((op) => op.assignment_id === assignmentId);
    if (index < 0 || (index === 0 && this.sending === assignmentId)) return false;
    this.items.splice(index, 1);
    this.save();
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
        this.items.shift();
        this.save();
        delay = 500;
        this.onState({ waiting: this.items.length, failing: false });
        this.onSent(op, result);
      } catch (error) {
        if (!(error instanceof ApiError) || !error.transient) {
          this.items.shift();
          this.save();
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
