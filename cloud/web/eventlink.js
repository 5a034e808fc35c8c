// A link to one event: Telegram's "Open in timeline" button opens <public url>/#event=<event id>. After log-in
// (the hash outlives the log-in form: it is never sent to the server) the page opens that event's player and
// picks its card out in the timeline; an id that is not this account's gets a plain note, not an error.
import { ApiError, api } from './api.js';

const PREFIX = '#event=';
const ID = /^[A-Za-z0-9-]{1,64}$/;
export const NOT_IN_TIMELINE = "This event is not in your timeline (deleted, or another account's)";

// The event id in the address, or undefined when the address names no event ('' for a malformed one).
export function linkedEvent() {
  if (!location.hash.startsWith(PREFIX)) return undefined;
  let id = '';
  try { id = decodeURIComponent(location.hash.slice(PREFIX.length)); } catch { /* malformed: the note */ }
  return ID.test(id) ? id : '';
}

export class EventLink {
  constructor(timeline) {
    this.timeline = timeline;
    this.opening = 0;
  }

  async open() {
    const id = linkedEvent();
    if (id === undefined) return;
    // Handled once: the address goes back to the page's own, so reloading does not reopen it and the same link
    // pressed again fires hashchange again.
    history.replaceState(null, '', location.pathname + location.search);
    const round = ++this.opening;
    if (!id) { this.timeline.forgetTarget(); this.timeline.showNote(NOT_IN_TIMELINE); return; }
    let detail;
    try {
      detail = await api(`/api/v1/events/${encodeURIComponent(id)}`);
    } catch (err) {
      if (round !== this.opening) return;
      const unknown = err instanceof ApiError && [400, 403, 404, 422].includes(err.status);
      this.timeline.forgetTarget();
      this.timeline.showNote(unknown ? NOT_IN_TIMELINE : `The event cannot be opened right now: ${err.message}`);
      return;
    }
    if (round !== this.opening) return;  // another link was opened meanwhile
    this.timeline.showNote(null);
    await this.timeline.reveal(detail);
    this.timeline.showPlayer(detail, this.timeline.events.get(detail.id));
  }
}
