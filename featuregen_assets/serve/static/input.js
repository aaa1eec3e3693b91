// Keyboard and image input: arrow keys between results, and images pasted or dropped on the page.

/** Focus a result's thumbnail (or only scroll it into view). */
export function focusHit(item, focus = true) {
  if (!item) return;
  if (focus) item.querySelector(".thumb").focus();
  item.scrollIntoView({ block: "nearest" });
}

function columns(items) {
  const top = items[0]?.offsetTop;
  const count = items.findIndex((item) => item.offsetTop !== top);
  return count > 0 ? count : items.length;
}

/** Arrow keys move between the results' grid cells; ArrowDown in the box enters the grid and
 * ArrowUp from its first row returns to the box. */
export function arrowKeys(results, box) {
  results.addEventListener("keydown", (event) => {
    const item = event.target.closest("li.hit");
    if (!item || event.altKey || event.ctrlKey || event.metaKey) return;
    const visible = [...results.querySelectorAll("li.hit:not([hidden])")];
    const across = columns(visible);
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -across, ArrowDown: across }[event.key];
    if (step === undefined) return;
    event.preventDefault();
    const at = visible.indexOf(item);
    const to = at + step;
    if (to < 0) {
      if (event.key === "ArrowUp") box.focus();
      return;
    }
    const lastRow = Math.floor((visible.length - 1) / across);
    const target =
      visible[to] || (step > 1 && Math.floor(at / across) < lastRow ? visible.at(-1) : null);
    focusHit(target);
  });

  box.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown") return;
    const first = results.querySelector("li.hit:not([hidden])");
    if (!first) return;
    event.preventDefault();
    focusHit(first);
  });
}

/** Call ``onImage`` with an image file pasted or dropped on the page (``cover`` shows while a
 * file is dragged over it). */
export function listenForImages(onImage, cover) {
  document.addEventListener("paste", (event) => {
    const items = [...(event.clipboardData?.items || [])];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return; // text pastes go into the box as usual
    event.preventDefault();
    onImage(item.getAsFile());
  });

  let dragDepth = 0;
  window.addEventListener("dragenter", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    dragDepth += 1;
    cover.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) cover.hidden = true;
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    cover.hidden = true;
    onImage(event.dataTransfer.files[0]);
  });
}
