// Periodic refresh of the current page: every N seconds as the user picks (or paused), never
// two refreshes at once, and nothing while the tab is hidden (it refreshes at once when shown
// again). The choice is kept in localStorage. A tick is skipped while the page holds
// refreshes (see dom.js hold()), so a redraw never wipes what the user is doing.

import { held } from './dom.js';

const KEY = 'lagomorph.refresh';
export const CHOICES = [[1, 'every 1 s'], [2, 'every 2 s'], [5, 'every 5 s'], [10, 'every 10 s'],
  [30, 'every 30 s'], [60, 'every 60 s'], [0, 'paused']];

export class Refresher {
  constructor() {
    const saved = Number(localStorage.getItem(KEY));
    this.seconds = CHOICES.some(([v]) => v === saved) && localStorage.getItem(KEY) !== null ? saved : 5;
    this.task = null;
    this.timer = 0;
    this.running = false;
    this.listeners = new Set();
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) this.stop();
      else this.kick();
    });
  }

  /** Sets the interval (0 pauses) and remembers it. */
  setSeconds(s) {
    this.seconds = s;
    localStorage.setItem(KEY, String(s));
    this.schedule();
  }

  /** Runs `task` now and then on every tick, until replaced. */
  start(task) {
    this.task = task;
    this.kick();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  /** Observers of each finished refresh (the "updated at" line). */
  onDone(fn) { this.listeners.add(fn); }

  /** Refresh now (unless one is running), then keep the schedule. */
  async kick() {
    this.stop();
    if (!this.task || this.running) { this.schedule(); return; }
    const task = this.task;
    this.running = true;
    let error = null;
    try {
      await task();
    } catch (e) {
      error = e;
    } finally {
      this.running = false;
    }
    for (const fn of this.listeners) fn(error);
    if (task === this.task) this.schedule();
  }

  schedule() {
    this.stop();
    if (this.seconds > 0 && !document.hidden && this.task) {
      this.timer = setTimeout(() => (held() ? this.schedule() : this.kick()), this.seconds * 1000);
    }
  }
}
