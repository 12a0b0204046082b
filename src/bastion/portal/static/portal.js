// Bastion portal: CSRF header on htmx requests, local times, the push channel,
// keyboard shortcuts with a help overlay, blur and grayscale. No inline handlers:
// everything is wired here (the Content-Security-Policy forbids inline script).
(function () {
  "use strict";

  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") : null;
  };
  const csrf = meta("csrf-token");
  const user = meta("bastion-user") || "anonymous";
  const prefKey = (name) => `bastion:${user}:${name}`;

  // ---- CSRF on every htmx request -------------------------------------------------
  document.addEventListener("htmx:configRequest", (event) => {
    if (csrf) event.detail.headers["X-CSRF-Token"] = csrf;
  });

  // ---- times in the person's own zone ---------------------------------------------
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach((el) => {
      const d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = d.toLocaleString();
        el.setAttribute("data-local", "1");
      }
    });
  }

  // ---- preferences (per user, in this browser) ------------------------------------
  function applyGray() {
    document.body.classList.toggle("grayscale", localStorage.getItem(prefKey("gray")) === "1");
  }
  function toggleGray() {
    const on = localStorage.getItem(prefKey("gray")) === "1";
    localStorage.setItem(prefKey("gray"), on ? "0" : "1");
    applyGray();
  }
  function toggleUnblur() {
    document.querySelectorAll(".sensitive").forEach((el) => el.classList.toggle("unblurred"));
  }

  // ---- push channel ----------------------------------------------------------------
  // One WebSocket per page: every message becomes a "bastion:<type>" DOM event that
  // pages listen to. Reconnects with back-off; "bastion:reconnected" tells pages to
  // catch up on what they may have missed.
  let socket = null;
  let retry = 500;
  function connect() {
    if (!csrf || document.body.dataset.push !== "on") return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/portal/ws`);
    const state = document.getElementById("push-state");
    let opened = false;
    socket.addEventListener("open", () => {
      if (state) state.classList.add("on");
      if (retry > 500) document.dispatchEvent(new CustomEvent("bastion:reconnected"));
      retry = 500;
      opened = true;
    });
    socket.addEventListener("message", (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg && typeof msg.type === "string") {
        document.dispatchEvent(new CustomEvent(`bastion:${msg.type}`, { detail: msg }));
      }
    });
    socket.addEventListener("close", () => {
      if (state) state.classList.remove("on");
      if (!opened) retry = Math.min(retry * 2, 15000);
      else retry = 1000;
      setTimeout(connect, retry);
    });
  }

  // ---- keyboard ---------------------------------------------------------------------
  // Any element with data-key="x" is clicked when x is pressed (outside text fields);
  // the help overlay lists them with their titles.
  function typing(target) {
    return target && (target.isContentEditable ||
      ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }
  function helpRows() {
    const table = document.getElementById("help-keys");
    if (!table) return;
    table.replaceChildren();
    const rows = [["?", "This help"], ["g", "Grayscale on/off"], ["u", "Unblur / blur media"]];
    document.querySelectorAll("[data-key]").forEach((el) => {
      rows.push([el.dataset.key, el.getAttribute("title") || el.textContent.trim()]);
    });
    for (const [key, what] of rows) {
      const tr = document.createElement("tr");
      const k = document.createElement("td");
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.appendChild(kbd);
      const w = document.createElement("td");
      w.textContent = what;
      tr.append(k, w);
      table.appendChild(tr);
    }
  }
  function toggleHelp(show) {
    const help = document.getElementById("help");
    if (!help) return;
    const open = show === undefined ? help.hidden : show;
    if (open) helpRows();
    help.hidden = !open;
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (key === "Escape") { toggleHelp(false); return; }
    if (key === "g") { toggleGray(); return; }
    if (key === "u") { toggleUnblur(); return; }
    const target = Array.from(document.querySelectorAll("[data-key]"))
      .find((el) => el.dataset.key === key && !el.disabled && el.offsetParent !== null);
    if (target) { event.preventDefault(); target.click(); }
  });

  // ---- confirmation without inline handlers ---------------------------------------
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("DOMContentLoaded", () => {
    applyGray();
    localTimes(document);
    const gray = document.getElementById("toggle-gray");
    if (gray) gray.addEventListener("click", toggleGray);
    connect();
  });
  document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));

  window.Bastion = { localTimes, toggleUnblur, prefKey };
})();
