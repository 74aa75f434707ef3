// Review page: draws every field's box on the page; focusing or hovering a field highlights its
// box, and clicking a box focuses its field.
"use strict";

(function () {
  const figure = document.getElementById("review-page");
  if (!figure) return;
  const overlays = JSON.parse(document.getElementById("review-overlays").textContent);
  PortalBoxes.draw(figure, overlays, {
    onClick: (overlay) => {
      const input = document.querySelector('input[data-field="' + CSS.escape(overlay.label) + '"]');
      if (input) input.focus();
      PortalBoxes.highlight(figure, overlay.label);
    },
  });
  document.querySelectorAll("#review-fields tr[data-field]").forEach((row) => {
    const name = row.dataset.field;
    const on = () => {
      PortalBoxes.highlight(figure, name);
      row.classList.add("active");
    };
    const off = () => row.classList.remove("active");
    row.addEventListener("mouseenter", on);
    row.addEventListener("mouseleave", off);
    row.addEventListener("focusin", on);
    row.addEventListener("focusout", off);
  });
})();
