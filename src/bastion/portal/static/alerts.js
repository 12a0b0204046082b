// Bastion alerts inbox (and a stream's timeline): alerts the push channel announces
// ("bastion:alert.created" / "bastion:alert.updated") appear at the top without a
// reload, changed ones are refreshed, and ones that leave the filter go. Rows are
// rendered by the server (escaped there) and swapped in by htmx, never built from
// the message's data. After a reconnect the list is fetched again. The selected
// row carries the keys: j / k move, a / d / s act on it.
(function () {
  "use strict";

  const list = () => document.querySelector("[data-alert-list]");
  const rowsOf = (el) => Array.from(el.querySelectorAll(":scope > [data-alert]"));
  const rowOf = (id) => document.querySelector(`[data-alert="${CSS.escape(id)}"]`);
  let selectedId = null;

  function matches(el, alert) {
    const states = (el.dataset.states || "").split(",").filter(Boolean);
    if (states.length && !states.includes(alert.state)) return false;
    for (const [key, field] of [["rule", "rule"], ["channel", "channel"], ["stream", "stream_id"]]) {
      const wanted = el.dataset[key] || "";
      if (wanted && alert[field] !== wanted) return false;
    }
    return true;
  }

  function rowMatches(el, row) {
    return matches(el, {
      state: row.dataset.state, rule: row.dataset.rule,
      channel: row.dataset.channel, stream_id: row.dataset.stream,
    });
  }

  // ---- selection and keys ----------------------------------------------------------
  function select(row) {
    const el = list();
    if (!el) return;
    el.querySelectorAll("[data-act]").forEach((b) => b.removeAttribute("data-key"));
    el.querySelectorAll(".selected").forEach((r) => r.classList.remove("selected"));
    selectedId = row ? row.dataset.alert : null;
    if (!row) return;
    row.classList.add("selected");
    row.querySelectorAll("[data-act]").forEach((b) => b.setAttribute("data-key", b.dataset.act));
  }

  function reselect() {
    const el = list();
    if (!el) return;
    const rows = rowsOf(el);
    const current = selectedId ? rows.find((r) => r.dataset.alert === selectedId) : null;
    select(current || rows[0] || null);
  }

  function move(step) {
    const el = list();
    if (!el) return;
    const rows = rowsOf(el);
    if (!rows.length) return;
    const at = rows.findIndex((r) => r.dataset.alert === selectedId);
    const next = rows[Math.max(0, Math.min(rows.length - 1, at + step))];
    select(next);
    next.scrollIntoView({ block: "nearest" });
  }

  function tidy() {
    const el = list();
    if (!el) return;
    const rows = rowsOf(el);
    // a row that left the filter (acknowledged under "open", dismissed, stopped) goes,
    // and the selection moves to the row that followed it
    rows.forEach((row, i) => {
      if (!rowMatches(el, row)) {
        if (row.dataset.alert === selectedId) {
          const after = rows.slice(i + 1).find((r) => rowMatches(el, r)) ||
            rows.slice(0, i).reverse().find((r) => rowMatches(el, r));
          selectedId = after ? after.dataset.alert : null;
        }
        row.remove();
      }
    });
    reselect();
    const empty = document.getElementById("alerts-empty");
    if (empty) empty.hidden = rowsOf(el).length > 0;
  }

  // ---- pushed changes --------------------------------------------------------------
  const pending = new Map(); // alert id -> fetch again when the one in flight is done

  function fetchRow(el, id) {
    if (pending.has(id)) { pending.set(id, true); return; }
    pending.set(id, false);
    const view = el.dataset.view === "item" ? "item" : "row";
    const url = `/portal/alerts/${encodeURIComponent(id)}/row?view=${view}`;
    const existing = rowOf(id);
    const swap = existing ? { target: existing, swap: "outerHTML" } : { target: el, swap: "afterbegin" };
    htmx.ajax("GET", url, swap).finally(() => {
      const again = pending.get(id);
      pending.delete(id);
      tidy();
      if (again) fetchRow(el, id);
    });
  }

  function onAlert(event) {
    const alert = event.detail && event.detail.alert;
    const el = list();
    if (!el || !alert || typeof alert.id !== "string") return;
    const existing = rowOf(alert.id);
    if (!matches(el, alert)) {
      if (existing && el.contains(existing)) {
        existing.dataset.state = String(alert.state);
        tidy();
      }
      return;
    }
    if (existing && Number(existing.dataset.version) >= Number(alert.version)) return;
    fetchRow(el, alert.id);
  }

  document.addEventListener("bastion:alert.created", onAlert);
  document.addEventListener("bastion:alert.updated", onAlert);
  document.addEventListener("bastion:reconnected", () => {
    const el = list();
    if (el && el.dataset.refreshUrl) {
      htmx.ajax("GET", el.dataset.refreshUrl, { target: el, swap: "innerHTML" }).finally(tidy);
    }
  });
  document.addEventListener("htmx:afterSwap", () => tidy());

  document.addEventListener("DOMContentLoaded", () => {
    const prev = document.getElementById("alert-prev");
    const next = document.getElementById("alert-next");
    if (prev) prev.addEventListener("click", () => move(-1));
    if (next) next.addEventListener("click", () => move(1));
    const el = list();
    if (el) {
      el.addEventListener("click", (event) => {
        const row = event.target instanceof Element ? event.target.closest("[data-alert]") : null;
        if (row && el.contains(row)) select(row);
      });
    }
    tidy();
  });
})();
