// Bastion live view: keeps stream tiles current from the push channel's
// "stream.updated" messages (portal.js turns them into "bastion:stream.updated" DOM
// events). Fields are written with textContent and attributes only, never as HTML; a
// stream the grid does not show yet is fetched as a tile rendered by the server.
(function () {
  "use strict";

  const STATUS = /^[a-z_]+$/;

  function tileOf(streamId) {
    return document.querySelector(`[data-stream-tile="${CSS.escape(streamId)}"]`);
  }

  function shownIn(grid, stream) {
    const status = grid.dataset.status || "";
    const channel = grid.dataset.channel || "";
    if (channel && stream.channel !== channel) return false;
    if (status === "all") return true;
    if (status === "") return stream.status !== "stopped" || tileOf(stream.stream_id) !== null;
    return stream.status === status;
  }

  function setText(tile, field, value) {
    tile.querySelectorAll(`[data-field="${field}"]`).forEach((el) => {
      el.textContent = value == null ? "" : String(value);
    });
  }

  function update(tile, stream) {
    if (STATUS.test(stream.status)) {
      tile.dataset.status = stream.status;
      tile.querySelectorAll('[data-field="status"]').forEach((el) => {
        el.textContent = stream.status;
        el.className = `badge status-${stream.status}`;
      });
    }
    tile.dataset.channel = stream.channel;
    setText(tile, "channel", stream.channel);
    setText(tile, "status_reason", stream.status_reason || "");
    setText(tile, "stopped_by", stream.stopped_by || "");
    const counters = stream.counters || {};
    tile.querySelectorAll("[data-counter]").forEach((el) => {
      const value = counters[el.dataset.counter];
      el.textContent = String(typeof value === "number" ? value : 0);
    });
    tile.querySelectorAll('[data-field="open_alerts"]').forEach((el) => {
      const open = Number(stream.open_alerts) || 0;
      el.textContent = String(open);
      el.classList.toggle("has-open", open > 0);
    });
    const time = tile.querySelector('[data-field="last_frame_at"]');
    if (time && stream.last_frame_at && time.getAttribute("datetime") !== stream.last_frame_at) {
      time.setAttribute("datetime", stream.last_frame_at);
      time.removeAttribute("data-local");
      time.textContent = stream.last_frame_at;
    }
    const img = tile.querySelector('[data-field="thumbnail"]');
    const url = stream.thumbnail_url;
    if (img && typeof url === "string" && url.startsWith("/portal/streams/")) {
      if (img.getAttribute("src") !== url) img.setAttribute("src", url);
      img.hidden = false;
      const none = tile.querySelector('[data-field="no-frame"]');
      if (none) none.hidden = true;
    }
    if (img) img.classList.toggle("sensitive", stream.sensitive === true);
    tile.dataset.updated = String(Date.now());
    if (window.Bastion) window.Bastion.localTimes(tile);
  }

  function stopForm(stream) {
    const form = document.getElementById("stop-form");
    const page = document.querySelector(`[data-stream-page="${CSS.escape(stream.stream_id)}"]`);
    if (form && page && stream.status === "stopped") form.hidden = true;
  }

  function emptyState() {
    const grid = document.getElementById("live-tiles");
    const empty = document.getElementById("live-empty");
    if (grid && empty) empty.hidden = grid.querySelector("[data-stream-tile]") !== null;
  }

  const fetching = new Set();

  function insert(grid, stream) {
    const id = stream.stream_id;
    if (fetching.has(id)) return;
    fetching.add(id);
    htmx.ajax("GET", `/portal/live/tiles/${encodeURIComponent(id)}`, { target: grid, swap: "afterbegin" })
      .finally(() => { fetching.delete(id); emptyState(); });
  }

  document.addEventListener("bastion:stream.updated", (event) => {
    const stream = event.detail && event.detail.stream;
    if (!stream || typeof stream.stream_id !== "string") return;
    const grid = document.getElementById("live-tiles");
    const tile = tileOf(stream.stream_id);
    if (grid && !shownIn(grid, stream)) {
      if (tile && grid.contains(tile)) tile.remove();
      emptyState();
      return;
    }
    if (tile) update(tile, stream);
    else if (grid) insert(grid, stream);
    stopForm(stream);
  });

  document.addEventListener("bastion:reconnected", () => {
    const grid = document.getElementById("live-tiles");
    if (grid && grid.dataset.refreshUrl) {
      htmx.ajax("GET", grid.dataset.refreshUrl, { target: grid, swap: "innerHTML" }).finally(emptyState);
    }
  });
})();
