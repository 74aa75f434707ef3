// Draws boxes (page pixels) into the <svg class="boxes"> over each page image.
"use strict";

window.PortalBoxes = (function () {
  const SVG = "http://www.w3.org/2000/svg";

  function draw(figure, overlays, options = {}) {
    const svg = figure.querySelector("svg.boxes");
    svg.replaceChildren();
    const page = Number(figure.dataset.page);
    overlays
      .filter((o) => (o.page || 1) === page)
      .forEach((o) => {
        const [x0, y0, x1, y1] = o.box;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", x0);
        rect.setAttribute("y", y0);
        rect.setAttribute("width", Math.max(1, x1 - x0));
        rect.setAttribute("height", Math.max(1, y1 - y0));
        rect.setAttribute("class", "box box-" + o.kind);
        rect.dataset.label = o.label;
        const title = document.createElementNS(SVG, "title");
        title.textContent = o.label; // text node: OCR text never becomes markup
        rect.append(title);
        if (options.onClick) rect.addEventListener("click", () => options.onClick(o));
        svg.append(rect);
      });
  }

  function highlight(figureRoot, label) {
    figureRoot.querySelectorAll("rect.box").forEach((rect) => {
      rect.classList.toggle("active", rect.dataset.label === label);
    });
  }

  return { draw, highlight };
})();
