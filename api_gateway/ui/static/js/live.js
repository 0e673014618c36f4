// The one listener for GET /events: views say which changes concern them and how to refresh.
// After a reconnect (or a reset event) every view refetches everything it shows.

const listeners = new Set();
let source = null;
let lostSince = null;

export function startLive(indicator) {
  if (source) return;
  source = new EventSource("/events");
  source.onopen = () => {
    indicator.hidden = false;
    indicator.classList.remove("down");
    if (lostSince !== null) refetchAll();
    lostSince = null;
  };
  source.onerror = () => {
    indicator.classList.add("down");
    if (lostSince === null) lostSince = Date.now();
  };
  source.onmessage = (event) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const listener of listeners) if (listener.wants(change)) listener.kick();
  };
  source.addEventListener("reset", refetchAll);
}

export function stopLive() {
  if (source) source.close();
  source = null;
}

function refetchAll() {
  for (const listener of listeners) listener.kick();
}

// Call refresh() when a change matching wants(change) arrives; at most once per minGapMs.
export function follow(wants, refresh, minGapMs = 300) {
  let timer = null;
  let last = 0;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    last = Date.now();
    try {
      await refresh();
    } catch (error) {
      console.warn("refresh failed", error);
    } finally {
      running = false;
      if (again) {
        again = false;
        listener.kick();
      }
    }
  };
  const listener = {
    wants,
    kick() {
      if (timer) return;
      timer = setTimeout(run, Math.max(0, minGapMs - (Date.now() - last)));
    },
  };
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
    if (timer) clearTimeout(timer);
  };
}
