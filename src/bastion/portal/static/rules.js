// Bastion portal: the line-numbered text editors of rule sets, policies and lists.
// The server draws the gutter (line numbers, problem lines marked); this keeps it in
// step with the textarea as the person types and scrolls, and takes "line N" links of
// the problem lists to that line. Wired with addEventListener only (CSP: no inline JS).
(function () {
  "use strict";

  const MAX_LINES = 20000;

  function lineCount(text) {
    let n = 1;
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
    return Math.min(n, MAX_LINES);
  }

  function setup(editor) {
    const gutter = editor.querySelector("[data-gutter]");
    const area = editor.querySelector("textarea");
    if (!gutter || !area) return;
    const marks = new Map();
    gutter.querySelectorAll("span.bad").forEach((el) => {
      marks.set(Number(el.dataset.line), el.getAttribute("title") || "");
    });
    let drawn = gutter.children.length;

    function draw() {
      const wanted = lineCount(area.value);
      if (wanted === drawn) return;
      const frag = document.createDocumentFragment();
      for (let n = 1; n <= wanted; n++) {
        const span = document.createElement("span");
        span.dataset.line = String(n);
        span.textContent = String(n);
        if (marks.has(n)) {
          span.className = "bad";
          span.title = marks.get(n);
        }
        frag.appendChild(span);
      }
      gutter.replaceChildren(frag);
      drawn = wanted;
      gutter.scrollTop = area.scrollTop;
    }

    area.addEventListener("input", draw);
    area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
    draw();
  }

  // Select line `line` of the textarea named `name` and scroll it into view.
  function goTo(name, line) {
    const area = document.getElementById(`editor-${name}`);
    if (!area) return;
    const lines = area.value.split("\n");
    const index = Math.max(0, Math.min(line - 1, lines.length - 1));
    let start = 0;
    for (let i = 0; i < index; i++) start += lines[i].length + 1;
    area.focus({ preventScroll: true });
    area.setSelectionRange(start, start + lines[index].length);
    const height = parseFloat(getComputedStyle(area).lineHeight) || 20;
    area.scrollTop = Math.max(0, index * height - area.clientHeight / 3);
    const editor = area.closest("[data-editor]");
    if (editor) {
      editor.querySelectorAll(".gutter span.current").forEach((el) => el.classList.remove("current"));
      const mark = editor.querySelector(`.gutter span[data-line="${index + 1}"]`);
      if (mark) mark.classList.add("current");
    }
  }

  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("[data-goto]") : null;
    if (!link) return;
    event.preventDefault();
    goTo(link.dataset.goto, Number(link.dataset.line) || 1);
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-editor]").forEach(setup);
    const first = document.querySelector(".problems [data-goto]");
    if (first) goTo(first.dataset.goto, Number(first.dataset.line) || 1);
  });
})();
