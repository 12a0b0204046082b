// Bastion review pages: the work view (claim, prefetch the next item, decide with the
// keyboard, hand held items back when the page is left), label corrections and notes,
// and the blur default per user. portal.js clicks any visible [data-key] element when
// its key is pressed; everything here is wired with addEventListener (the CSP forbids
// inline script).
(function () {
  "use strict";

  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") : "";
  };
  const csrf = meta("csrf-token");
  const POLL_MS = 2000;         // how often an empty queue is checked again
  const MAX_SKIPPED = 200;      // the server's limit of items left out of a claim
  const GONE = new Set(["review_lease_lost", "review_already_decided", "review_not_found"]);

  const prefKey = (name) =>
    window.Bastion && window.Bastion.prefKey ? window.Bastion.prefKey(name) : `bastion:anonymous:${name}`;

  function headers(json) {
    // HX-Request: errors come back as the portal's message fragment, not as a page.
    const h = { "X-CSRF-Token": csrf, "HX-Request": "true" };
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  function fragment(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content;
  }

  function clearFlash() {
    const flash = document.getElementById("flash");
    if (flash) flash.replaceChildren();
  }

  // An error answer: its message in the page's message area; its code.
  async function failed(response) {
    if (response.status === 401) {
      const to = response.headers.get("HX-Redirect");
      if (to) window.location.assign(to);
      return "not_signed_in";
    }
    const content = fragment(await response.text());
    const found = content.querySelector("[data-code]");
    const flash = document.getElementById("flash");
    if (flash) flash.replaceChildren(content);
    return found ? found.getAttribute("data-code") : `http_${response.status}`;
  }

  // ---- blur default (per user, in this browser) --------------------------------------
  function blurByDefault() {
    return localStorage.getItem(prefKey("review.blur")) !== "0";
  }
  function localTimes(root) {
    if (window.Bastion && window.Bastion.localTimes) window.Bastion.localTimes(root);
  }
  function applyBlur(root) {
    const unblurred = !blurByDefault();
    root.querySelectorAll(".sensitive").forEach((el) => el.classList.toggle("unblurred", unblurred));
  }
  function wirePrefs() {
    const box = document.getElementById("pref-blur");
    if (!box) return;
    box.checked = blurByDefault();
    box.addEventListener("change", () => {
      localStorage.setItem(prefKey("review.blur"), box.checked ? "1" : "0");
      document.querySelectorAll(".review-card").forEach(applyBlur);
    });
  }

  // ---- label corrections and the note (both pages) ----------------------------------
  const taxonomy = () =>
    new Set(Array.from(document.querySelectorAll("#taxonomy-names option")).map((o) => o.value));

  function labelError(card, message) {
    const el = card.querySelector(".label-error");
    if (!el) return;
    el.textContent = message;
    el.hidden = !message;
  }

  function addLabel(card, name) {
    const chips = card.querySelector(".chips");
    if (!chips || !name) return false;
    if (!taxonomy().has(name)) {
      labelError(card, `"${name}" is not a taxonomy label`);
      return false;
    }
    labelError(card, "");
    const known = Array.from(chips.querySelectorAll(".chip")).find((c) => c.dataset.label === name);
    if (known) {
      known.classList.remove("removed");
      return true;
    }
    const chip = document.createElement("span");
    chip.className = "chip added";
    chip.dataset.label = name;
    const text = document.createElement("span");
    text.className = "chip-name";
    text.textContent = name;
    const drop = document.createElement("button");
    drop.type = "button";
    drop.className = "chip-toggle";
    drop.title = `Remove ${name}`;
    drop.textContent = "×";
    chip.append(text, drop);
    chips.appendChild(chip);
    return true;
  }

  function corrections(card) {
    const add = [];
    const remove = [];
    card.querySelectorAll(".chip").forEach((chip) => {
      const added = chip.classList.contains("added");
      const removed = chip.classList.contains("removed");
      if (added && !removed) add.push(chip.dataset.label);
      if (!added && removed) remove.push(chip.dataset.label);
    });
    const note = card.querySelector("textarea.note");
    return { add_labels: add, remove_labels: remove, note: note ? note.value : "" };
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const card = target.closest(".review-card");
    if (!card) return;
    const toggle = target.closest(".chip-toggle");
    if (toggle) {
      const chip = toggle.closest(".chip");
      if (chip.classList.contains("added")) chip.remove();
      else chip.classList.toggle("removed");
      return;
    }
    if (target.closest(".label-add-button")) {
      const input = card.querySelector(".label-input");
      const name = input.value.trim();
      if (name && addLabel(card, name)) input.value = "";
      else input.focus();
      return;
    }
    if (target.closest(".note-focus")) {
      const note = card.querySelector("textarea.note");
      if (note) note.focus();
    }
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!(target instanceof Element) || !target.closest(".review-card")) return;
    if (target.matches(".label-input") && event.key === "Enter") {
      event.preventDefault();
      const card = target.closest(".review-card");
      if (addLabel(card, target.value.trim())) target.value = "";
    } else if (target.matches(".label-input, textarea.note") && event.key === "Escape") {
      event.preventDefault();
      target.blur(); // back to the keys
    }
  });

  // When the key that led to an action was pressed (performance.now() time base).
  let lastKeyAt = -1;
  document.addEventListener("keydown", () => { lastKeyAt = performance.now(); }, true);
  // "reject-stop" is reject with the alert's stream stopped (items of live alerts only).
  function decision(action) {
    return action === "reject-stop" ? { action: "reject", stop_stream: true } : { action };
  }
  function showStop(root, card) {
    const stop = root.querySelector('[data-action="reject-stop"]');
    if (stop) stop.hidden = card.dataset.source !== "alert";
  }

  function startedAt() {
    const now = performance.now();
    return now - lastKeyAt < 100 ? lastKeyAt : now;
  }

  async function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  }

  // ---- the work view ---------------------------------------------------------------
  function workView(root) {
    const current = document.getElementById("review-current");
    const nextBox = document.getElementById("review-next");
    const empty = document.getElementById("review-empty");
    const loading = document.getElementById("review-loading");
    const timing = document.getElementById("review-timing");
    const counts = document.getElementById("review-counts");
    const unskip = document.getElementById("review-unskip");
    const actions = Array.from(document.querySelectorAll("#review-actions [data-action]"));
    const state = { card: null, next: null, pending: null, busy: false, leaving: false, skipped: [], poll: null, history: [] };
    const timings = [];
    const calls = [];
    const server = [];
    // Read by the benchmark and the tests: decision round trips (ms, key press to the next
    // item shown) and, of each, the decide call's own round trip and the server's time.
    window.BastionReview = { timings, calls, server, state };

    const setEnabled = (on) => actions.forEach((b) => { b.disabled = !on; });

    async function claim() {
      const r = await post(root.dataset.claimUrl, { exclude: state.skipped.slice(-MAX_SKIPPED) });
      if (r.status === 204) return null;
      if (!r.ok) {
        await failed(r);
        return null;
      }
      return fragment(await r.text()).firstElementChild;
    }

    // Claim the item after this one now, and keep it (hidden) until this one is decided.
    function prefetch() {
      if (state.leaving || state.pending || state.next) return;
      const pending = claim().then(
        (card) => {
          if (state.pending === pending) state.pending = null;
          if (card && !state.leaving) {
            applyBlur(card);
            localTimes(card);
            keys(card, false); // its keys wait until it is shown (and stay out of the help)
            nextBox.replaceChildren(card); // its media loads now, out of sight
            state.next = card;
          }
          return card;
        },
        () => {
          if (state.pending === pending) state.pending = null;
          return null;
        },
      );
      state.pending = pending;
    }

    function keys(card, on) {
      const [from, to] = on ? ["data-key-later", "data-key"] : ["data-key", "data-key-later"];
      card.querySelectorAll(`[${from}]`).forEach((el) => {
        el.setAttribute(to, el.getAttribute(from));
        el.removeAttribute(from);
      });
    }

    function show(card) {
      applyBlur(card); // whatever "u" did to the last one, each item starts at the default
      keys(card, true);
      current.replaceChildren(card);
      state.card = card;
      loading.hidden = true;
      empty.hidden = true;
      root.dataset.shown = card.dataset.itemId;
      localTimes(card);
      setEnabled(true);
      showStop(root, card);
      stopPolling();
      prefetch();
    }

    function showEmpty() {
      state.card = null;
      current.replaceChildren();
      loading.hidden = true;
      empty.hidden = false;
      unskip.hidden = state.skipped.length === 0;
      root.dataset.shown = "";
      setEnabled(false);
      startPolling();
    }

    async function nextCard() {
      let card = state.next;
      if (!card && state.pending) card = await state.pending;
      state.next = null;
      if (card) return card;
      return claim(); // the prefetch found nothing: perhaps something came in since
    }

    // "Previous" (k) opens the item decided last on its own page, with its audit log
    // (leaving this page hands back what it holds).
    const previous = document.getElementById("review-previous");
    function remember(card) {
      state.history.push(card.dataset.decideUrl.replace(/\/decide$/, ""));
      if (previous) previous.disabled = false;
    }
    if (previous) {
      previous.addEventListener("click", () => {
        const last = state.history[state.history.length - 1];
        if (last) window.location.href = last;
      });
    }

    async function advance(t0) {
      const card = await nextCard();
      if (card) show(card);
      else showEmpty();
      await new Promise((resolve) => requestAnimationFrame(resolve));
      const ms = performance.now() - t0;
      timings.push(ms);
      timing.textContent = `last decision ${Math.round(ms)} ms`;
      root.dataset.decided = String(timings.length);
      refreshCounts();
    }

    // The queue's counts in the heading, at most every few seconds (off the hot path).
    let countsAt = -Infinity;
    async function refreshCounts() {
      const now = performance.now();
      if (!counts || now - countsAt < POLL_MS) return;
      countsAt = now;
      const r = await fetch(root.dataset.waitingUrl, { headers: { "HX-Request": "true" } });
      if (!r.ok) return;
      const n = await r.json();
      counts.textContent = `${n.open} open · ${n.claimed} claimed · ${n.decided} decided`;
    }

    async function act(action) {
      if (state.busy || !state.card) return;
      state.busy = true;
      const t0 = startedAt();
      const card = state.card;
      try {
        // A claim still on its way (keys pressed faster than the next item loads) goes
        // first: two writes at once only queue up behind each other in the database.
        if (state.pending) await state.pending;
        if (action === "skip") {
          state.skipped.push(card.dataset.itemId);
          const r = await post(card.dataset.releaseUrl);
          if (!r.ok) await failed(r);
        } else {
          const sent = performance.now();
          const r = await post(card.dataset.decideUrl, { ...decision(action), ...corrections(card) });
          calls.push(performance.now() - sent);
          const spent = /dur=([0-9.]+)/.exec(r.headers.get("Server-Timing") || "");
          if (spent) server.push(Number(spent[1]));
          if (!r.ok) {
            const code = await failed(r);
            if (!GONE.has(code)) return; // stay on the item: correct it and decide again
          } else {
            clearFlash();
          }
          // an item escalated from the escalation queue comes back to it: not to this page
          if (action === "escalate") state.skipped.push(card.dataset.itemId);
          if (r.ok) remember(card);
        }
        await advance(t0);
      } finally {
        state.busy = false;
      }
    }

    function stopPolling() {
      if (state.poll) clearInterval(state.poll);
      state.poll = null;
    }
    function startPolling() {
      if (state.poll) return;
      state.poll = setInterval(async () => {
        if (document.visibilityState !== "visible" || state.busy || state.card || state.leaving) return;
        state.busy = true;
        try {
          const r = await fetch(root.dataset.waitingUrl, { headers: { "HX-Request": "true" } });
          if (!r.ok) return;
          const waiting = await r.json();
          if (waiting.open > 0) {
            const card = await claim();
            if (card) show(card);
          }
        } finally {
          state.busy = false;
        }
      }, POLL_MS);
    }

    // Leaving the page hands back what it holds (the item shown and the one prefetched);
    // a lease not handed back runs out by itself.
    function handBack() {
      state.leaving = true;
      const ids = [state.card, state.next].filter(Boolean).map((c) => c.dataset.itemId);
      if (!ids.length) return;
      const form = new URLSearchParams();
      form.append("csrf_token", csrf);
      ids.forEach((id) => form.append("ids", id));
      navigator.sendBeacon(root.dataset.releaseUrl, form);
      state.card = null;
      state.next = null;
    }
    window.addEventListener("pagehide", handBack);
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) window.location.reload(); // back from the cache: claim afresh
    });

    actions.forEach((button) => button.addEventListener("click", () => act(button.dataset.action)));
    unskip.addEventListener("click", async () => {
      state.skipped = [];
      unskip.hidden = true;
      const card = await claim();
      if (card) show(card);
    });

    setEnabled(false);
    claim().then((card) => (card ? show(card) : showEmpty()), showEmpty);
  }

  // ---- one item's page (an admin, or the holder, decides here) -----------------------
  function itemPage(root) {
    const card = root.querySelector(".review-card");
    if (card) showStop(root, card);
    const buttons = Array.from(root.querySelectorAll("#review-actions [data-action]"));
    let busy = false;
    buttons.forEach((button) => button.addEventListener("click", async () => {
      if (busy || !card) return;
      busy = true;
      try {
        const r = await post(card.dataset.decideUrl, { ...decision(button.dataset.action), ...corrections(card) });
        if (r.ok) window.location.reload();
        else await failed(r);
      } finally {
        busy = false;
      }
    }));
  }

  function common() {
    wirePrefs();
    document.querySelectorAll(".review-card").forEach(applyBlur);
    const unblur = document.getElementById("review-unblur");
    if (unblur) unblur.addEventListener("click", () => window.Bastion && window.Bastion.toggleUnblur());
    const help = document.getElementById("review-help");
    if (help) help.addEventListener("click", () => document.dispatchEvent(new KeyboardEvent("keydown", { key: "?" })));
  }

  document.addEventListener("DOMContentLoaded", () => {
    common();
    const work = document.getElementById("review-work");
    if (work && work.dataset.moderator === "yes") workView(work);
    const item = document.getElementById("review-item");
    if (item) itemPage(item);
  });
})();
