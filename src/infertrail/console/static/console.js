// infertrail console: optional conveniences only; every page reads the same without scripts.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A select that changes the time range submits its form at once.
  for (const el of document.querySelectorAll("select[data-autosubmit]")) {
    el.addEventListener("change", () => el.form && el.form.submit());
  }
  // "Copy" buttons next to proofs and receipts.
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.hidden = false;
    btn.addEventListener("click", () => {
      const source = document.getElementById(btn.dataset.copy);
      if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent);
    });
  }
});
